#!/usr/bin/env python3
"""Generates the HL7 v2.5 messages the parse benchmark reads (bench/hl7v2/run.sh): French ADT^A01 /
A08 (IHE PAM-Fr: INS and a local identifier in PID-3, PV1, ZBE) and ORU^R01 results (10 to 20 OBX,
NTE notes, escapes), alternating, seeded (the same every time). Writes a JSON array of strings.

  generate.py --count 2000 --out messages.json
"""
import argparse
import json
import random

FAMILIES = ["MARTIN", "BERNARD", "DUBOIS", "THOMAS", "ROBERT", "RICHARD", "PETIT", "DURAND", "LEROY", "MOREAU",
            "SIMON", "LAURENT", "LEFEBVRE", "MICHEL", "GARCIA", "DAVID", "BERTRAND", "ROUX", "VINCENT", "FOURNIER"]
GIVEN = ["Hélène", "Françoise", "Jérôme", "Loïc", "Chloé", "Noël", "Gaëlle", "Zoé", "André", "Mathéo", "Léa", "Inès"]
LOINC = [("72514-3", "Pain severity 0-10", "{score}"), ("8867-4", "Heart rate", "/min"), ("8480-6", "Systolic BP", "mm[Hg]"),
         ("2345-7", "Glucose", "mg/dL"), ("718-7", "Hemoglobin", "g/dL"), ("2160-0", "Creatinine", "mg/dL"),
         ("6690-2", "Leukocytes", "10*3/uL"), ("777-3", "Platelets", "10*3/uL"), ("2951-2", "Sodium", "mmol/L"),
         ("2823-3", "Potassium", "mmol/L")]


def msh(rng, n, kind):
    return ("MSH|^~\\&|GAM|CHU-AVICENNE|PASSERELLE|D77|2026%02d%02d%02d%02d%02d||%s|MSG%08d|P|2.5^FRA^2.11|||||FRA|UNICODE UTF-8|FR"
            % (rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59), kind, n))


def pid(rng, n):
    nir = "%d%02d%02d%02d%03d%03d" % (rng.choice([1, 2]), rng.randint(40, 99), rng.randint(1, 12), rng.randint(1, 95),
                                       rng.randint(1, 999), rng.randint(1, 999))
    return ("PID|1||%07d^^^CHU-AVICENNE&1.2.250.1.71.4.2.2&ISO^PI~%s^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS||%s^%s^%s^^^^L~%s^^^^^^M||19%02d%02d%02d|%s|||%d rue de la Paix^^MEAUX^^77100^FRA^H||^PRN^PH^^^^^^^^^+33 6 12 34 56 78"
            % (n, nir, rng.choice(FAMILIES), rng.choice(GIVEN), rng.choice(GIVEN), rng.choice(FAMILIES), rng.randint(40, 99),
               rng.randint(1, 12), rng.randint(1, 28), rng.choice("FM"), rng.randint(1, 99)))


def adt(rng, n):
    trigger = rng.choice(["A01^ADT_A01", "A08^ADT_A01"])
    return "\r".join([
        msh(rng, n, "ADT^" + trigger),
        "EVN||2026%02d%02d101500" % (rng.randint(1, 12), rng.randint(1, 28)),
        pid(rng, n),
        "PV1|1|I|CARDIO^101^1^CHU-AVICENNE||||801234567866^DOE^JOHN^^^^^^ASIP-SANTE-PS&1.2.250.1.71.4.2.1&ISO^D^^^RPPS|||||||||||%d^^^CHU-AVICENNE^VN" % (n * 7),
        "ZBE|MVT%08d^CHU-AVICENNE|20260301101500||INSERT|N||UF CARDIO^^^^^CHU-AVICENNE&1.2.250.1.71.4.2.2&ISO^UF^^^4001" % n,
    ]) + "\r"


def oru(rng, n):
    lines = [msh(rng, n, "ORU^R01^ORU_R01"), pid(rng, n),
             "OBR|1|ORD%06d|RES%06d|24331-1^Lipid panel^LN|||20260301083000|||||||||801234567866^DOE^JOHN|||||||||F" % (n, n)]
    for k in range(rng.randint(10, 20)):
        code, text, unit = rng.choice(LOINC)
        value = "%.1f" % rng.uniform(1, 200)
        lines.append("OBX|%d|NM|%s^%s^LN||%s|%s^%s^UCUM|1-10|N|||F|||20260301090000" % (k + 1, code, text, value, unit, unit))
        if k % 5 == 0:
            lines.append("NTE|%d||Résultat contrôlé\\.br\\valeur \\F\\ seuil \\S\\ référence" % (k + 1))
    return "\r".join(lines) + "\r"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rng = random.Random(20261206)
    msgs = [adt(rng, i) if i % 2 == 0 else oru(rng, i) for i in range(args.count)]
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(msgs, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
