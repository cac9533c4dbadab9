-- Sends pre-generated request bodies, each once: POST BENCH_PATH with BENCH_CONTENT_TYPE, the bodies
-- of BENCH_BODIES_FILE (each as its length in bytes on a line, then the bytes: generate.py and
-- baseline.py write them) from number BENCH_FIRST to BENCH_LAST (0-based, inclusive). wrk thread t
-- of BENCH_THREADS sends bodies first + t, first + t + threads, ... in that order, so that no body
-- is sent twice. wrk calls request() once before the run, in thread 0, to check the script: that
-- body (number BENCH_FIRST) is never sent. A thread that runs out starts its share again and counts
-- the repeats: bench/network/run.sh refuses such a run (give it more documents).
--   BENCH_BODIES_FILE=raw.bodies BENCH_FIRST=0 BENCH_LAST=999 BENCH_PATH=/fhir \
--     wrk -t2 -c16 -d10s --latency -s bench/network/cycle.lua http://127.0.0.1:PORT
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "../wrk/common.lua")

setup = common.setup
response = common.response

local bodies = {}
local next_body = 1
local headers = {}
local path

function init(args)
  local threads = common.thread_count()
  local first = tonumber(os.getenv("BENCH_FIRST") or "0")
  local last = tonumber(os.getenv("BENCH_LAST") or "-1")
  local file = assert(os.getenv("BENCH_BODIES_FILE"), "BENCH_BODIES_FILE is not set")
  path = os.getenv("BENCH_PATH") or "/fhir"
  headers["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE") or "application/fhir+json"
  headers["Accept"] = os.getenv("BENCH_ACCEPT") or "application/fhir+json"
  common.with_auth(headers) -- Authorization: Bearer $PASSERELLE_TOKEN, when set
  local f = assert(io.open(file, "rb"))
  local n = 0
  while true do
    local len = f:read("l")
    if not len then break end
    local size = assert(tonumber(len), "bad length line in " .. file)
    if n >= first and (last < 0 or n <= last) and (n - first) % threads == tid then
      bodies[#bodies + 1] = f:read(size)
    else
      f:seek("cur", size)
    end
    n = n + 1
  end
  f:close()
  if #bodies == 0 then error("no bodies for thread " .. tid .. " in " .. file) end
  sent = 0
  repeats = 0
end

function request()
  if next_body > #bodies then
    next_body = 1
  end
  local body = bodies[next_body]
  next_body = next_body + 1
  sent = sent + 1
  if sent > #bodies then repeats = repeats + 1 end
  return wrk.format("POST", path, headers, body)
end

local threads = {}
local base_setup = setup
setup = function(thread)
  threads[#threads + 1] = thread
  base_setup(thread)
end

function done(summary, latency, requests)
  local total_repeats = 0
  for _, thread in ipairs(threads) do
    total_repeats = total_repeats + (thread:get("repeats") or 0)
  end
  common.done(summary, latency, requests)
  io.write(string.format("BENCH_REPEATS %d\n", total_repeats))
end
