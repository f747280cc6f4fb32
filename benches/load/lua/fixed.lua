-- One fixed authenticated GET per thread: the thread's own path and bearer token, set in `init`, from which
-- wrk builds the request once (no Lua call per request: wrk's fastest path, as for the baseline).
-- args: FILE (one "path<TAB>token" line per thread) THREADS

function init(args)
   local k = 0
   for line in io.lines(args[1]) do
      if k == id then
         local path, token = string.match(line, "^(%S+)\t(%S+)$")
         wrk.path = path
         wrk.headers["Authorization"] = "Bearer " .. token
      end
      k = k + 1
   end
   assert(wrk.headers["Authorization"], "no request for thread " .. id)
end
