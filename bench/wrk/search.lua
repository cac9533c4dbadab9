-- Search scenario: GET /fhir/Patient?identifier=SYSTEM|SEED-n (a token search with one match, as
-- a partner looks a patient up by identifier), n round robin over 0..BENCH_SEED-1 (the identifiers
-- bench/seed_patients.mjs writes; thread k of T starts k/T of the way; BENCH_THREADS=T, default 2).
--   BENCH_SEED=1000 wrk -t2 -c16 -d10s --latency -s bench/wrk/search.lua http://127.0.0.1:PORT
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local count, n

setup = common.setup
response = common.response
done = common.done

function init(args)
  count = tonumber(os.getenv("BENCH_SEED") or "1000")
  n = math.floor((tid or 0) * count / common.thread_count()) % count
end

local headers = common.with_auth({ ["Accept"] = "application/fhir+json" })

function request()
  n = (n + 1) % count
  return wrk.format("GET", "/fhir/Patient?identifier=urn:oid:1.2.250.1.71.4.2.7%7CSEED-" .. n, headers)
end
