-- Shared by every wrk scenario of the load harness (benches/load): numbers the threads (`id`, from 0) and
-- prints one machine-readable line at the end. A scenario script is appended to this one.
--
-- Thread globals a scenario may set: `wrapped` (times its single-use inputs ran out and started over),
-- `lost` (requests sent without a live input), `first_failure` (text: the first answer that was not 200, for
-- scripts that read answers).

local threads = {}
local counter = 0

function setup(thread)
   thread:set("id", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

function done(summary, latency, requests)
   local wrapped, lost = 0, 0
   for _, t in ipairs(threads) do
      wrapped = wrapped + (t:get("wrapped") or 0)
      lost = lost + (t:get("lost") or 0)
      local failure = t:get("first_failure")
      if failure then
         io.write("WRK_FIRST_FAILURE " .. string.gsub(failure, "\n", " ") .. "\n")
      end
   end
   local e = summary.errors
   io.write(string.format("WRK_RESULT %d %d %.0f %.0f %.0f %.0f %d %d %d %d %d %d %d\n",
      summary.requests, summary.duration,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      e.connect, e.read, e.write, e.status, e.timeout, wrapped, lost))
end
