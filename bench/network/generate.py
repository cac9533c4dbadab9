#!/usr/bin/env python3
"""Writes the network documents of the CIED benchmark (bench/network/run.sh) into a folder.

  generate.py --out DIR --patients N [--gps 20] [--seed 1] [--pathologies low-back-pain,migraine,cancer]

For N patients, deterministic for a given seed:

  professionals.jsonl   the GPs' `professional` documents (one JSON document a line)
  inclusions.jsonl      one `inclusion` a patient, in patient order
  consents.jsonl        one `consent` a patient (signed the day after the inclusion)
  cied.jsonl            one `cied` a patient, compact JSON, one a line
  cied-json.bodies      the same CIEDs as request bodies (see below)
  cied-xml.bodies       the same CIEDs in the XML form (scripts/gen_network_xsd.py writes them)
  patients.tsv          index, networkId, NIR, pathology, GP RPPS, CIED date

A `.bodies` file holds request bodies one after the other, each as its length in bytes on a line
of its own followed by the bytes themselves (bench/network/cycle.lua reads it).

Patients cycle through the pathologies of --pathologies (by default all three), each CIED carrying its pathology's scale (Dallas for
low-back pain, QVM for migraine, BPI for cancer), the VAS, the opioid dose, the six utilisation
counts of the last six months and one to three treatments: 9 Observations (8 and a
QuestionnaireResponse for cancer), the Encounter, the MedicationStatements, the report Composition,
the CarePlan and its Goal, and the List that indexes the document.
"""

import argparse
import datetime
import importlib.util
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

FAMILIES = ["MARTIN", "BERNARD", "DUBOIS", "THOMAS", "ROBERT", "RICHARD", "PETIT", "DURAND", "LEROY", "MOREAU",
            "SIMON", "LAURENT", "LEFEBVRE", "MICHEL", "GARCIA", "DAVID", "BERTRAND", "ROUX", "VINCENT", "FOURNIER",
            "MOREL", "GIRARD", "ANDRÉ", "LEFÈVRE", "MERCIER", "DUPONT", "LAMBERT", "BONNET", "FRANÇOIS", "MARTINEZ"]
GIVEN_MALE = ["Julien", "Pierre", "Nicolas", "Thomas", "Mathieu", "Sébastien", "Antoine", "Jérôme", "Laurent", "Olivier"]
GIVEN_FEMALE = ["Sophie", "Camille", "Nathalie", "Isabelle", "Céline", "Émilie", "Aurélie", "Julie", "Hélène", "Claire"]
CITIES = [("77000", "Melun"), ("77100", "Meaux"), ("77160", "Provins"), ("77300", "Fontainebleau"),
          ("77130", "Montereau-Fault-Yonne"), ("77200", "Torcy"), ("77400", "Lagny-sur-Marne"), ("77500", "Chelles")]
STREETS = ["rue des Tanneurs", "avenue Thiers", "place du Marché", "rue de la République", "quai Hippolyte Rossignol",
           "rue Saint-Ambroise", "boulevard Chamblain", "allée des Tilleuls"]
PATHOLOGIES = [("low-back-pain", "M54.5", "dallas"), ("migraine", "G43.9", "qvm"), ("cancer", "G89.3", "bpi")]
TREATMENTS = [("N02BE01", "Paracétamol 1 g", "1 g trois fois par jour"),
              ("N02AX02", "Tramadol 50 mg", "50 mg deux fois par jour"),
              ("M01AE01", "Ibuprofène 400 mg", "400 mg matin et soir pendant les crises"),
              ("N03AX16", "Prégabaline 75 mg", "75 mg le soir"),
              ("N06AA09", "Amitriptyline 25 mg", "10 gouttes le soir"),
              ("N02AA05", "Oxycodone 10 mg LP", "10 mg matin et soir"),
              ("N02CC01", "Sumatriptan 50 mg", "un comprimé au début de la crise")]
TODAY = datetime.date(2026, 11, 23)
FIRST_INCLUSION = datetime.date(2026, 1, 5)


def load_xml_writer():
    """The project's JSON -> XML writer for the network documents (scripts/gen_network_xsd.py)."""
    path = os.path.join(ROOT, "scripts", "gen_network_xsd.py")
    spec = importlib.util.spec_from_file_location("gen_network_xsd", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.XmlExample


def nir(sex_digit, birth, department, commune, order):
    """A 15-digit NIR (INS): 13 digits and the key 97 - (number mod 97)."""
    body = "%d%02d%02d%s%03d%03d" % (sex_digit, birth.year % 100, birth.month, department, commune, order)
    return body + "%02d" % (97 - int(body) % 97)


def rpps(g):
    return "101%08d" % (10000 + g)


def professional(g, rnd):
    female = g % 2 == 0
    return {
        "documentType": "professional",
        "schemaVersion": "1.0",
        "documentId": "D77-PRO-2025-%06d" % (g + 1),
        "professional": {"rpps": rpps(g), "family": rnd.choice(FAMILIES),
                         "given": [rnd.choice(GIVEN_FEMALE if female else GIVEN_MALE)],
                         "category": "gp", "specialty": "SM54", "level": 1},
        "membership": {"signatureDate": "2025-09-15", "status": "active"},
        "trainings": [{"kind": "network-cycle", "date": "2025-10-06", "days": 2}],
    }


def day(d):
    return d.isoformat()


def patient_documents(i, gps, pathologies, rnd):
    """The inclusion, consent and CIED of patient i (0-based), and its patients.tsv row."""
    network_id = "P77-%06d" % (i + 1)
    male = i % 2 == 0
    inclusion = FIRST_INCLUSION + datetime.timedelta(days=(i * 7) % 300)  # up to 2026-11-01
    birth = datetime.date(rnd.randint(1962, 2004), rnd.randint(1, 12), rnd.randint(1, 28))
    number = nir(1 if male else 2, birth, "77", rnd.randint(1, 550), i % 1000)
    pathology, diagnosis, scale = pathologies[i % len(pathologies)]
    gp = {"rpps": rpps(i % gps)}
    postal, city = rnd.choice(CITIES)
    given = rnd.sample(GIVEN_MALE if male else GIVEN_FEMALE, rnd.randint(1, 2))
    onset = inclusion - datetime.timedelta(days=rnd.randint(120, 330))
    inc = {
        "documentType": "inclusion",
        "schemaVersion": "1.0",
        "documentId": "D77-INC-2026-%06d" % (i + 1),
        "inclusionDate": day(inclusion),
        "gp": gp,
        "patient": {"nir": number, "networkId": network_id, "family": rnd.choice(FAMILIES), "given": given,
                    "sex": "male" if male else "female", "birthDate": day(birth),
                    "address": {"lines": ["%d %s" % (rnd.randint(1, 80), rnd.choice(STREETS))],
                                "postalCode": postal, "city": city}},
        "coverage": {"scheme": "regime-general", "caisse": "CPAM 77", "memberId": number},
        "pathology": pathology,
        "diagnosisCode": diagnosis,
        "painOnsetDate": day(onset),
        "criteria": {
            "dailyPainOver3Months": {"met": True, "evidence": "Douleur quasi quotidienne depuis %d mois." %
                                     ((inclusion - onset).days // 30)},
            "resistantToStep1And2": {"met": True, "evidence": "Échec du paracétamol puis du tramadol à dose efficace."},
            "activityImpact": {"met": True, "evidence": "Arrêt de travail et activités de loisirs abandonnées."},
        },
    }
    signed = inclusion + datetime.timedelta(days=1)
    con = {
        "documentType": "consent",
        "schemaVersion": "1.0",
        "documentId": "D77-CON-2026-%06d" % (i + 1),
        "patient": {"networkId": network_id},
        "gp": gp,
        "signatureDate": day(signed),
        "signatories": {"patient": True, "gp": True, "network": True},
        "engagements": ["E1", "E2", "E3"],
        "sharing": i % 4 != 0,
    }
    date = inclusion + datetime.timedelta(days=rnd.randint(7, 21))
    assert date <= TODAY
    vas = rnd.randint(45, 95) / 10
    method = ["vas", "numeric", "verbal"][i % 3]
    measures = {"vas": {"value": vas, "method": method}}
    if method == "vas":
        measures["vas"]["rawMm"] = int(round(vas * 10))
    if scale == "dallas":
        measures["dallas"] = {"dailyActivities": rnd.randint(30, 90), "workLeisure": rnd.randint(30, 90),
                              "anxietyDepression": rnd.randint(10, 70), "socialInterest": rnd.randint(10, 70)}
    elif scale == "qvm":
        measures["qvm"] = {"score": rnd.randint(20, 80)}
    else:
        measures["bpi"] = {"severity": [rnd.randint(3, 10) for _ in range(4)],
                           "interference": [rnd.randint(2, 10) for _ in range(7)]}
    treatments = [{"atc": a, "label": l, "dose": d} for a, l, d in rnd.sample(TREATMENTS, rnd.randint(1, 3))]
    period_start = date - datetime.timedelta(days=182)
    cied = {
        "documentType": "cied",
        "schemaVersion": "1.0",
        "documentId": "D77-CIED-2026-%06d" % (i + 1),
        "patient": {"networkId": network_id},
        "gp": gp,
        "date": day(date),
        "durationMinutes": rnd.randint(45, 80),
        "measures": measures,
        "treatments": treatments,
        "opioidDailyDoseMg": rnd.choice([0, 10, 20, 30, 40, 60]),
        "utilisation": {
            "period": {"start": day(period_start), "end": day(date - datetime.timedelta(days=1))},
            "sickLeaveDays": rnd.randint(0, 90), "hospitalDays": rnd.randint(0, 5),
            "gpConsultations": rnd.randint(2, 12), "specialistConsultations": rnd.randint(0, 4),
            "imagingActs": rnd.randint(0, 3), "physiotherapyActs": rnd.randint(0, 20),
        },
        "report": {
            "text": ("Douleur chronique (%s) depuis le %s, résistante aux paliers I et II. EVA %s/10. "
                     "Retentissement sur les activités quotidiennes et professionnelles. Plan : %s, "
                     "activité physique adaptée, réévaluation en consultation de suivi à 6 mois.") %
                    (pathology, day(onset), str(vas).replace(".", ","),
                     "kinésithérapie (12 séances)" if scale == "dallas" else "traitement de fond ajusté"),
            "pdf": "JVBERi0xLjQK",
        },
    }
    row = [str(i), network_id, number, pathology, gp["rpps"], day(date)]
    return inc, con, cied, row


def write_bodies(f, body):
    data = body.encode("utf-8")
    f.write(b"%d\n" % len(data))
    f.write(data)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--patients", type=int, required=True)
    ap.add_argument("--gps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--pathologies", default="low-back-pain,migraine,cancer",
                    help="the pathologies patients cycle through (comma-separated)")
    args = ap.parse_args()
    known = {p[0]: p for p in PATHOLOGIES}
    names = [n for n in args.pathologies.split(",") if n]
    if not names or any(n not in known for n in names):
        sys.exit("generate.py: --pathologies takes some of " + ",".join(known))
    pathologies = [known[n] for n in names]
    if args.patients < 1 or args.patients > 999999 or args.gps < 1:
        sys.exit("generate.py: --patients must be 1 to 999999, --gps at least 1")
    os.makedirs(args.out, exist_ok=True)
    xml_writer = load_xml_writer()("cied")
    rnd = random.Random(args.seed)
    compact = {"ensure_ascii": False, "separators": (",", ":")}
    with open(os.path.join(args.out, "professionals.jsonl"), "w", encoding="utf-8") as f:
        for g in range(args.gps):
            f.write(json.dumps(professional(g, rnd), **compact) + "\n")
    paths = {name: os.path.join(args.out, name) for name in
             ("inclusions.jsonl", "consents.jsonl", "cied.jsonl", "cied-json.bodies", "cied-xml.bodies", "patients.tsv")}
    with open(paths["inclusions.jsonl"], "w", encoding="utf-8") as inc_f, \
            open(paths["consents.jsonl"], "w", encoding="utf-8") as con_f, \
            open(paths["cied.jsonl"], "w", encoding="utf-8") as cied_f, \
            open(paths["cied-json.bodies"], "wb") as json_f, \
            open(paths["cied-xml.bodies"], "wb") as xml_f, \
            open(paths["patients.tsv"], "w", encoding="utf-8") as tsv:
        for i in range(args.patients):
            inc, con, cied, row = patient_documents(i, args.gps, pathologies, rnd)
            inc_f.write(json.dumps(inc, **compact) + "\n")
            con_f.write(json.dumps(con, **compact) + "\n")
            text = json.dumps(cied, **compact)
            cied_f.write(text + "\n")
            write_bodies(json_f, text)
            write_bodies(xml_f, xml_writer.write(cied))
            tsv.write("\t".join(row) + "\n")


if __name__ == "__main__":
    main()
