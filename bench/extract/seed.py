#!/usr/bin/env python3
"""Seeds a gateway for bench/extract/run.sh with a cohort, as transaction Bundles (POST BASE/fhir).

PATIENTS patients, each: a Patient with an INS (a valid NIR), its pathology (Condition), a D77
EpisodeOfCare (inclusion dates spread over the year, evaluable or not), an active Consent, a CIED
(Encounter with its duration, the pain score, two care-use Observations of the six months before)
and, for every other patient, a CSB of semester 1 with its pain score. Sends
"Authorization: Bearer $PASSERELLE_TOKEN" when it is set.

  seed.py --base http://127.0.0.1:PORT --patients 2000
"""

import argparse
import datetime
import http.client
import json
import os
import urllib.parse
import uuid

CS = "https://douleur77.fr/fhir/CodeSystem/"
SD = "https://douleur77.fr/fhir/StructureDefinition/"
PATHOLOGIES = ["low-back-pain", "migraine", "cancer"]


def urn():
    return "urn:uuid:" + str(uuid.uuid4())


def entry(full_url, resource):
    return {"fullUrl": full_url, "resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}


def nir(n):
    base = "1%02d%02d77%03d%03d" % (50 + n % 40, 1 + n % 12, n % 1000, n // 1000 % 1000)
    return base + "%02d" % (97 - int(base) % 97)


def quantity(value, code):
    return {"value": value, "unit": code, "system": "http://unitsofmeasure.org", "code": code}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--bundle", type=int, default=20, help="patients per transaction")
    args = ap.parse_args()
    u = urllib.parse.urlsplit(args.base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    headers = {"Content-Type": "application/fhir+json"}
    if os.environ.get("PASSERELLE_TOKEN"):
        headers["Authorization"] = "Bearer " + os.environ["PASSERELLE_TOKEN"]
    for first in range(0, args.patients, args.bundle):
        entries = []
        for n in range(first, min(args.patients, first + args.bundle)):
            day = datetime.date(2026, 1, 5) + datetime.timedelta(days=n % 170)
            p, c, ep, cied = urn(), urn(), urn(), urn()
            pathology = PATHOLOGIES[n % 3]
            entries.append(entry(p, {"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": nir(n)}],
                                     "name": [{"use": "official", "family": "COHORTE", "given": ["Personne%d" % n]}],
                                     "gender": "female" if n % 2 else "male",
                                     "birthDate": (datetime.date(1960, 1, 1) + datetime.timedelta(days=n * 3 % 15000)).isoformat()}))
            entries.append(entry(c, {"resourceType": "Condition", "subject": {"reference": p},
                                     "code": {"coding": [{"system": CS + "pathology", "code": pathology}]}}))
            entries.append(entry(ep, {"resourceType": "EpisodeOfCare", "status": "active",
                                      "type": [{"coding": [{"system": CS + "d77-programme", "code": "D77"}]}],
                                      "extension": [{"url": SD + "evaluable", "valueBoolean": n % 5 != 0}],
                                      "diagnosis": [{"condition": {"reference": c}}],
                                      "patient": {"reference": p}, "period": {"start": day.isoformat()}}))
            entries.append(entry(urn(), {"resourceType": "Consent", "status": "active",
                                         "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "treatment"}]},
                                         "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
                                         "patient": {"reference": p}, "dateTime": day.isoformat(),
                                         "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]}}))
            encounters = [(cied, "CIED", day, None)]
            if n % 2 == 0:
                encounters.append((urn(), "CSB", day + datetime.timedelta(days=182), 1))
            for ref, kind, when, semester in encounters:
                e = {"resourceType": "Encounter", "status": "finished",
                     "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                     "type": [{"coding": [{"system": CS + "d77-enc", "code": kind}]}],
                     "subject": {"reference": p}, "period": {"start": when.isoformat()},
                     "length": quantity(55 + n % 20 if kind == "CIED" else 25 + n % 10, "min")}
                if semester:
                    e["extension"] = [{"url": SD + "csb-semester", "valueInteger": semester}]
                entries.append(entry(ref, e))
                entries.append(entry(urn(), {"resourceType": "Observation", "status": "final",
                                             "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]},
                                             "subject": {"reference": p}, "encounter": {"reference": ref}, "effectiveDateTime": when.isoformat(),
                                             "valueQuantity": {"value": 4 + n % 6 - (2 if semester else 0), "unit": "{score}"}}))
            before = (day - datetime.timedelta(days=182)).isoformat()
            for code, value, unit in (("SICK-LEAVE-DAYS", n % 60, "d"), ("GP-CONSULT", 3 + n % 7, "{count}")):
                entries.append(entry(urn(), {"resourceType": "Observation", "status": "final",
                                             "code": {"coding": [{"system": CS + "d77-ind", "code": code}]},
                                             "subject": {"reference": p}, "encounter": {"reference": cied},
                                             "effectivePeriod": {"start": before, "end": (day - datetime.timedelta(days=1)).isoformat()},
                                             "valueQuantity": quantity(value, unit)}))
        body = json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})
        conn.request("POST", "/fhir", body=body, headers=headers)
        resp = conn.getresponse()
        text = resp.read()
        if resp.status != 200:
            raise SystemExit("seed.py: transaction answered %d: %s" % (resp.status, text[:400]))


if __name__ == "__main__":
    main()
