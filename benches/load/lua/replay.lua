-- Sends pre-formatted raw HTTP requests read from a file (records separated by a NUL byte), each thread its
-- own share (every `threads`-th record from its `id`), in order, starting over when they run out.
-- args: FILE THREADS

local reqs, n, i = {}, 0, 0
wrapped = 0

function init(args)
   local threads = tonumber(args[2])
   local f = assert(io.open(args[1], "rb"))
   local data = f:read("*a")
   f:close()
   local k, at = 0, 1
   while at <= #data do
      local stop = string.find(data, "\0", at, true) or (#data + 1)
      if k % threads == id then
         n = n + 1
         reqs[n] = string.sub(data, at, stop - 1)
      end
      k = k + 1
      at = stop + 1
   end
   assert(n > 0, "no request for thread " .. id)
end

function request()
   i = i + 1
   if i > n then
      i = 1
      wrapped = wrapped + 1
   end
   return reqs[i]
end
