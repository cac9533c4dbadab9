-- Shared by the wrk scenario scripts (loaded with dofile, see the top of each script).
--
-- * Counts the responses whose status is not 2xx, per thread, and prints the total in done().
-- * Prints one machine-readable line for bench/run.sh:
--     BENCH_RESULT requests=N duration_us=N rps=X p50_us=N p99_us=N non2xx=N socket_errors=N
-- * Reads the Patient ids (one per line) from the file named by BENCH_IDS_FILE.
-- * Adds "Authorization: Bearer $PASSERELLE_TOKEN" to the scenarios' headers when that variable is
--   set (the gateway's access control; bench/lib.sh mints the token).
local M = {}

-- Adds the bearer token of PASSERELLE_TOKEN, if any, to a table of headers and returns it.
function M.with_auth(headers)
  local token = os.getenv("PASSERELLE_TOKEN")
  if token and token ~= "" then headers["Authorization"] = "Bearer " .. token end
  return headers
end

-- The headers of every FHIR write the scenarios send.
M.write_headers = M.with_auth({
  ["Content-Type"] = "application/fhir+json",
  ["Accept"] = "application/fhir+json",
})

local threads = {}
local thread_count = 0

-- Called by wrk in the main Lua state once per thread, before the threads start.
function M.setup(thread)
  thread:set("tid", thread_count)
  thread_count = thread_count + 1
  threads[#threads + 1] = thread
end

-- Per-thread state (each wrk thread runs its own copy of the script).
M.non2xx = 0
M.first_failures = {}

function M.response(status, headers, body)
  if status < 200 or status > 299 then
    M.non2xx = M.non2xx + 1
    non2xx = M.non2xx -- global, so that done() can read it through thread:get
    if #M.first_failures < 3 then
      M.first_failures[#M.first_failures + 1] = status .. " " .. string.sub(body or "", 1, 200)
      first_failures = table.concat(M.first_failures, "\n    ")
    end
  end
end

function M.done(summary, latency, requests)
  local total = 0
  local samples = {}
  for _, thread in ipairs(threads) do
    total = total + (thread:get("non2xx") or 0)
    local f = thread:get("first_failures")
    if f then samples[#samples + 1] = f end
  end
  local e = summary.errors
  local socket_errors = e.connect + e.read + e.write + e.timeout
  local seconds = summary.duration / 1e6
  io.write(string.format("non-2xx responses: %d\n", total))
  for _, s in ipairs(samples) do
    io.write("  first non-2xx: " .. s .. "\n")
  end
  io.write(string.format(
    "BENCH_RESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p99_us=%d non2xx=%d socket_errors=%d\n",
    summary.requests, summary.duration, summary.requests / seconds,
    latency:percentile(50), latency:percentile(99), total, socket_errors))
end

-- The Patient ids of BENCH_IDS_FILE, in file order.
function M.load_ids()
  local path = os.getenv("BENCH_IDS_FILE")
  if not path or path == "" then
    error("BENCH_IDS_FILE is not set (file of Patient ids, one per line)")
  end
  local ids = {}
  local f = assert(io.open(path, "r"))
  for line in f:lines() do
    local id = line:match("^%s*(.-)%s*$")
    if id ~= "" then ids[#ids + 1] = id end
  end
  f:close()
  if #ids == 0 then error("no ids in " .. path) end
  return ids
end

-- Number of wrk threads (-t), from BENCH_THREADS (default 2): wrk does not tell the scripts.
function M.thread_count()
  return tonumber(os.getenv("BENCH_THREADS") or "") or 2
end

-- Seeds math.random differently in every thread (and every run).
function M.seed(tid)
  local t = os.time()
  local c = math.floor((os.clock() * 1e6) % 1e6)
  math.randomseed(t * 1000 + c + (tid or 0) * 7919)
  for _ = 1, 10 do math.random() end
end

local hex = "0123456789abcdef"
local function hexdigits(n)
  local out = {}
  for i = 1, n do
    local d = math.random(1, 16)
    out[i] = hex:sub(d, d)
  end
  return table.concat(out)
end

-- A random (version 4) UUID, lower case.
function M.uuid()
  local v = ({ "8", "9", "a", "b" })[math.random(1, 4)]
  return hexdigits(8) .. "-" .. hexdigits(4) .. "-4" .. hexdigits(3) .. "-" .. v .. hexdigits(3) .. "-" .. hexdigits(12)
end

return M
