-- Read scenario: GET /fhir/Patient/{id}, round robin over the ids of BENCH_IDS_FILE
-- (thread k of T starts k/T of the way into the list; set BENCH_THREADS=T, default 2).
--   BENCH_IDS_FILE=ids.txt wrk -t2 -c16 -d10s --latency -s bench/wrk/read.lua http://127.0.0.1:PORT
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local ids, next_index

setup = common.setup
response = common.response
done = common.done

function init(args)
  ids = common.load_ids()
  next_index = math.floor((tid or 0) * #ids / common.thread_count()) % #ids
end

local headers = common.with_auth({ ["Accept"] = "application/fhir+json" })

function request()
  next_index = next_index % #ids + 1
  return wrk.format("GET", "/fhir/Patient/" .. ids[next_index], headers)
end
