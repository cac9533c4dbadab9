-- Transaction scenario: POST /fhir with a Bundle of type transaction of 100 entries: 50 Patients and
-- 50 Observations (LOINC 72514-3, pain severity 0-10), each Observation's subject pointing at one
-- Patient's urn:uuid fullUrl, so the server must resolve the references inside the bundle.
-- Every entry is request {method: POST, url: Patient|Observation}; the urn:uuids are fresh on
-- every request.
--   wrk -t2 -c4 -d10s --latency -s bench/wrk/transaction.lua http://127.0.0.1:PORT
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local PAIRS = 50
local counter = 0

setup = common.setup
response = common.response
done = common.done

function init(args)
  common.seed(tid)
end

local headers = common.write_headers

local patient_format = table.concat({
  '{"fullUrl":"urn:uuid:%s","resource":{"resourceType":"Patient",',
  '"identifier":[{"system":"urn:oid:1.2.250.1.71.4.2.7","value":"IPP-%d-%d"}],',
  '"name":[{"use":"official","family":"Garnier","given":["Luc"]}],',
  '"telecom":[{"system":"phone","value":"+33 1 64 00 %02d %02d","use":"home"}],',
  '"gender":"male","birthDate":"19%02d-0%d-1%d",',
  '"address":[{"line":["3 place du Marche"],"city":"Provins","postalCode":"77160","country":"FR"}]},',
  '"request":{"method":"POST","url":"Patient"}}',
})

local observation_format = table.concat({
  '{"fullUrl":"urn:uuid:%s","resource":{"resourceType":"Observation","status":"final",',
  '"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category",',
  '"code":"survey","display":"Survey"}]}],',
  '"code":{"coding":[{"system":"http://loinc.org","code":"72514-3",',
  '"display":"Pain severity - 0-10 verbal numeric rating [Score] - Reported"}],"text":"Pain severity"},',
  '"subject":{"reference":"urn:uuid:%s"},"effectiveDateTime":"2024-03-%02dT10:%02d:00+01:00",',
  '"valueInteger":%d},',
  '"request":{"method":"POST","url":"Observation"}}',
})

function request()
  counter = counter + 1
  local entries = {}
  for i = 1, PAIRS do
    local patient = common.uuid()
    entries[#entries + 1] = string.format(patient_format, patient, tid or 0, counter * PAIRS + i,
      i % 100, (counter + i) % 100, 40 + i % 60, 1 + i % 9, i % 10)
    entries[#entries + 1] = string.format(observation_format, common.uuid(), patient,
      1 + i % 28, i % 60, (counter + i) % 11)
  end
  local body = '{"resourceType":"Bundle","type":"transaction","entry":[' .. table.concat(entries, ",") .. "]}"
  return wrk.format("POST", "/fhir", headers, body)
end
