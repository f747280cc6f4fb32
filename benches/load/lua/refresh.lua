-- POST /v1/auth/refresh with single-use refresh tokens: each thread keeps a queue of live tokens (at least
-- one per connection: one chain each; the harness gives two, so that a broken chain does not starve a
-- connection) and puts back the new token each 200 answer carries. A connection never has two requests in
-- flight, so its answer is back in the queue before it asks for the next.
-- args: FILE (one token a line) THREADS

local queue, head, tail = {}, 1, 0
lost = 0

local function push(token)
   tail = tail + 1
   queue[tail] = token
end

function init(args)
   local threads = tonumber(args[2])
   local k = 0
   for line in io.lines(args[1]) do
      if k % threads == id then
         push(line)
      end
      k = k + 1
   end
end

local headers = { ["Content-Type"] = "application/json" }

function request()
   local token
   if head <= tail then
      token = queue[head]
      queue[head] = nil
      head = head + 1
   else
      lost = lost + 1
      token = "rt_none"
   end
   return wrk.format("POST", "/v1/auth/refresh", headers, '{"refresh_token":"' .. token .. '"}')
end

function response(status, _, body)
   local token = status == 200 and string.match(body, '"refresh_token":"(rt_[%w_%-]+)"')
   if token then
      push(token)
   elseif not first_failure then
      first_failure = status .. " " .. string.sub(body, 1, 300)
   end
end
