#!/usr/bin/env python3
"""Seeds a gateway for bench/gp/run.sh with transaction Bundles (POST BASE/fhir).

One network GP (Practitioner with RPPS and a PractitionerRole identified as the network member
https://douleur77.fr/fhir/sid/member|rpps:RPPS), then PATIENTS Patients with distinct strict traits
(family BANC, first name Prenom<n>, a birth date of their own), each with an EpisodeOfCare whose
careManager is the GP (the Practitioner) and an active treatment Consent (the GP correspondent, consent A).
With --reports each also gets a CIED: an Encounter, three Observations of it and a final
Composition of type 11488-4 with the report's text (what queues an HPRIM Net export to the GP's
installation). Writes the patients (id, family, given, birth date) to OUT as JSON. Sends
"Authorization: Bearer $PASSERELLE_TOKEN" when it is set.

  seed.py --base http://127.0.0.1:PORT --patients 500 [--reports] --out patients.json
"""

import argparse
import datetime
import http.client
import json
import os
import urllib.parse
import uuid

MEMBER = "https://douleur77.fr/fhir/sid/member"
RPPS = "https://rpps.esante.gouv.fr"
LOINC = "http://loinc.org"


def entry(full_url, resource):
    return {"fullUrl": full_url, "resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}


def urn():
    return "urn:uuid:" + str(uuid.uuid4())


def post(conn, headers, entries):
    body = json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    conn.request("POST", "/fhir", body=body, headers=headers)
    resp = conn.getresponse()
    text = resp.read()
    if resp.status != 200:
        raise SystemExit("seed.py: transaction answered %d: %s" % (resp.status, text[:400]))
    # "Type/id/_history/1", possibly absolute: (type, id)
    return [e["response"]["location"].split("/_history")[0].split("/")[-2:] for e in json.loads(text)["entry"]]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--patients", type=int, default=500)
    ap.add_argument("--rpps", default="10101234567")
    ap.add_argument("--reports", action="store_true")
    ap.add_argument("--bundle", type=int, default=25, help="patients per transaction")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    u = urllib.parse.urlsplit(args.base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=300)
    headers = {"Content-Type": "application/fhir+json"}
    if os.environ.get("PASSERELLE_TOKEN"):
        headers["Authorization"] = "Bearer " + os.environ["PASSERELLE_TOKEN"]
    pr, prr = urn(), urn()
    created = post(conn, headers, [
        entry(pr, {"resourceType": "Practitioner", "identifier": [{"system": RPPS, "value": args.rpps}],
                   "name": [{"family": "MARTIN", "given": ["Sophie"], "prefix": ["Dr"]}]}),
        entry(prr, {"resourceType": "PractitionerRole", "active": True,
                    "identifier": [{"use": "official", "system": MEMBER, "value": "rpps:" + args.rpps}],
                    "practitioner": {"reference": pr},
                    "code": [{"coding": [{"system": "https://douleur77.fr/fhir/CodeSystem/network-role", "code": "gp"}]}]}),
    ])
    # The care manager as the Practitioner: R4's care-manager search parameter (what the access
    # policy's gp-correspondent relationship searches) indexes Practitioner references only.
    manager, role = "/".join(created[0]), "/".join(created[1])
    people = []
    for first in range(0, args.patients, args.bundle):
        entries, mine = [], []
        for n in range(first, min(args.patients, first + args.bundle)):
            birth = (datetime.date(1950, 1, 1) + datetime.timedelta(days=n * 7)).isoformat()
            p = urn()
            entries.append(entry(p, {"resourceType": "Patient", "name": [{"use": "official", "family": "BANC", "given": ["Prenom%d" % n]}],
                                     "gender": "female" if n % 2 else "male", "birthDate": birth}))
            mine.append({"n": n, "family": "BANC", "given": "Prenom%d" % n, "birthDate": birth})
            entries.append(entry(urn(), {"resourceType": "EpisodeOfCare", "status": "active",
                                         "type": [{"coding": [{"system": "https://douleur77.fr/fhir/CodeSystem/d77-programme", "code": "D77"}]}],
                                         "patient": {"reference": p}, "careManager": {"reference": manager}, "period": {"start": "2026-01-15"}}))
            entries.append(entry(urn(), {"resourceType": "Consent", "status": "active",
                                         "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "treatment"}]},
                                         "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
                                         "patient": {"reference": p}, "dateTime": "2026-01-15",
                                         "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
                                         "provision": {"type": "permit", "period": {"start": "2026-01-15", "end": "2027-01-14"}}}))
            if args.reports:
                enc = urn()
                entries.append(entry(enc, {"resourceType": "Encounter", "status": "finished",
                                           "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                                           "subject": {"reference": p}, "period": {"start": "2026-03-02"}}))
                for code, value, unit in (("72514-3", 7.5, "Level"), ("77565-0", 6.1, "{score}"), ("38214-3", 75, "mm")):
                    entries.append(entry(urn(), {"resourceType": "Observation", "status": "final",
                                                 "code": {"coding": [{"system": LOINC, "code": code}]},
                                                 "subject": {"reference": p}, "encounter": {"reference": enc},
                                                 "effectiveDateTime": "2026-03-02",
                                                 "valueQuantity": {"value": value, "unit": unit}}))
                entries.append(entry(urn(), {"resourceType": "Composition", "status": "final",
                                             "type": {"coding": [{"system": LOINC, "code": "11488-4"}]},
                                             "subject": {"reference": p}, "encounter": {"reference": enc}, "date": "2026-03-02",
                                             "author": [{"reference": role}], "title": "Compte rendu de consultation douleur",
                                             "extension": [{"url": "https://douleur77.fr/fhir/StructureDefinition/report-text",
                                                            "valueString": "Lombalgie chronique, EVA 7,5/10. Plan : kinésithérapie."}]}))
        out = post(conn, headers, entries)
        ids = [i for (t, i) in out if t == "Patient"]
        for person, pid in zip(mine, ids):
            person["id"] = pid
        people.extend(mine)
    with open(args.out, "w") as f:
        json.dump(people, f)


if __name__ == "__main__":
    main()
