-- Create scenario: POST /fhir/Patient with a realistic Patient of about 1 KB (identifier, name,
-- telecom, address, birthDate, ...), no "id"; the identifier value changes with every request.
--   wrk -t2 -c16 -d10s --latency -s bench/wrk/create.lua http://127.0.0.1:PORT
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local counter = 0
local base = 0

setup = common.setup
response = common.response
done = common.done

function init(args)
  base = (tid or 0) * 100000000000
end

local headers = common.write_headers

local body_format = table.concat({
  '{"resourceType":"Patient",',
  '"identifier":[{"use":"official","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203",',
  '"code":"NI"}]},"system":"urn:oid:1.2.250.1.213.1.4.8","value":"1%012d"},',
  '{"use":"usual","system":"urn:oid:1.2.250.1.71.4.2.7","value":"IPP-%d"}],',
  '"active":true,"name":[{"use":"official","family":"Moreau","given":["Isabelle","Marie"]},',
  '{"use":"maiden","family":"Petit"}],',
  '"telecom":[{"system":"phone","value":"+33 6 12 34 56 78","use":"mobile"},',
  '{"system":"email","value":"isabelle.moreau@example.org","use":"home"}],',
  '"gender":"female","birthDate":"1974-06-21",',
  '"address":[{"use":"home","type":"physical","line":["8 rue de la Paix","Appartement 12"],',
  '"city":"Meaux","district":"Seine-et-Marne","postalCode":"77100","country":"FR"}],',
  '"maritalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-MaritalStatus","code":"M"}]},',
  '"communication":[{"language":{"coding":[{"system":"urn:ietf:bcp:47","code":"fr-FR"}]},"preferred":true}]}',
})

function request()
  counter = counter + 1
  local n = base + counter
  return wrk.format("POST", "/fhir/Patient", headers, string.format(body_format, n, n))
end
