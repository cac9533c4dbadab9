-- Update scenario: PUT /fhir/Patient/{id} with a full Patient whose "id" matches the URL, round robin
-- over the pre-created ids of BENCH_IDS_FILE (about 1000). Thread k of T (BENCH_THREADS=T, default 2)
-- only touches ids k+1, k+1+T, k+1+2T, ... so two threads never update the same Patient, and the
-- requests in flight on one thread are on neighbouring, distinct ids: concurrent updates of one
-- resource stay rare. No If-Match: a version conflict is not what this scenario measures.
--   BENCH_IDS_FILE=ids.txt wrk -t2 -c16 -d10s --latency -s bench/wrk/update.lua http://127.0.0.1:PORT
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local mine = {}
local next_index = 0
local counter = 0

setup = common.setup
response = common.response
done = common.done

function init(args)
  local ids = common.load_ids()
  local threads = common.thread_count()
  local me = (tid or 0) % threads
  for i = 1, #ids do
    if (i - 1) % threads == me then mine[#mine + 1] = ids[i] end
  end
  if #mine == 0 then mine = ids end
end

local headers = common.write_headers

-- About 1 KB once the id is in; the phone number changes with every request.
local head = '{"resourceType":"Patient","id":"'
local tail_format = table.concat({
  '","identifier":[{"use":"official","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203",',
  '"code":"NI"}]},"system":"urn:oid:1.2.250.1.213.1.4.8","value":"2%012d"}],',
  '"active":true,"name":[{"use":"official","family":"Lefebvre","given":["Jean","Marc"]}],',
  '"telecom":[{"system":"phone","value":"+33 6 %08d","use":"mobile"},',
  '{"system":"email","value":"jean.lefebvre@example.org","use":"home"}],',
  '"gender":"male","birthDate":"1962-11-04",',
  '"address":[{"use":"home","type":"physical","line":["27 avenue du General Leclerc","Batiment B"],',
  '"city":"Fontainebleau","district":"Seine-et-Marne","postalCode":"77300","country":"FR"}],',
  '"maritalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-MaritalStatus","code":"M"}]},',
  '"communication":[{"language":{"coding":[{"system":"urn:ietf:bcp:47","code":"fr-FR"}]},"preferred":true}],',
  '"generalPractitioner":[{"display":"Dr Sophie Bernard"}]}',
})

function request()
  next_index = next_index % #mine + 1
  counter = counter + 1
  local id = mine[next_index]
  local body = head .. id .. string.format(tail_format, counter % 1000000000000, counter % 100000000)
  return wrk.format("PUT", "/fhir/Patient/" .. id, headers, body)
end
