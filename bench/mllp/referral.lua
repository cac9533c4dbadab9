-- Inflow of the backlog benchmark (bench/mllp/backlog.sh): POST /fhir/ServiceRequest, a referral
-- (category SNOMED CT 3457005) to the benchmark hospital's structure (Organization/bench-hospital)
-- for the patients Patient/bench-0 .. bench-(BENCH_PATIENTS-1) in turn; each queues one delivery.
--   wrk -t2 -c16 -d10s --latency -s bench/mllp/referral.lua http://127.0.0.1:PORT
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "../wrk/common.lua")

setup = common.setup
response = common.response
done = common.done

local counter = 0
local patients = tonumber(os.getenv("BENCH_PATIENTS") or "200")
local headers = common.write_headers

local body_format = table.concat({
  '{"resourceType":"ServiceRequest","status":"active","intent":"order",',
  '"identifier":[{"system":"https://douleur77.fr/fhir/sid/referral","value":"BENCH-%d-%d"}],',
  '"category":[{"coding":[{"system":"http://snomed.info/sct","code":"3457005","display":"Patient referral"}]}],',
  '"subject":{"reference":"Patient/bench-%d"},"authoredOn":"2026-12-01",',
  '"occurrencePeriod":{"start":"2026-12-01","end":"2026-12-16"},',
  '"performer":[{"reference":"Organization/bench-hospital"}],',
  '"reasonCode":[{"text":"Pas de réduction de 50 %% de la douleur à 6 mois"}]}',
})

function request()
  counter = counter + 1
  return wrk.format("POST", "/fhir/ServiceRequest", headers,
                    string.format(body_format, tid or 0, counter, (counter * 7 + (tid or 0)) % patients))
end
