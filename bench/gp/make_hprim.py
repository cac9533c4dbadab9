#!/usr/bin/env python3
"""Writes COUNT HPRIM Net files (ISO 8859-1) for the patients of PATIENTS (seed.py's output), in
turn: a lab result with its twelve header lines, a line of text and three RES lines whose values
differ from file to file (no two files have the same content).

  make_hprim.py --patients patients.json --count 10000 --out DIR
"""

import argparse
import json
import os


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", required=True)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    people = json.load(open(args.patients))
    os.makedirs(args.out, exist_ok=True)
    for k in range(args.count):
        p = people[k % len(people)]
        y, m, d = p["birthDate"].split("-")
        hb = 12 + (k % 50) / 10
        text = ("Bilan %d\r\n%s\r\n%s\r\n1 rue du Banc\r\n\r\n77140 NEMOURS\r\n%s/%s/%s\r\n\r\nDEM-%06d\r\n02/09/2026\r\n"
                "LAB77 Laboratoire de Melun\r\n10101234567 Dr MARTIN Sophie\r\n"
                "Résultats : hémoglobine %.1f g/dL\r\n****LAB****\r\n"
                "RES|Hémoglobine|HB|N|%.1f|g/dL|13|17||F|\r\n"
                "RES|Protéine C réactive|CRP|N|%d|mg/L||5||F|\r\n"
                "RES|Ferritine|FER|N|%d|µg/L|15|150||F|\r\n"
                "****FIN****\r\n****FINFICHIER****\r\n") % (k, p["family"], p["given"], d, m, y, k, hb, hb, k % 20, 20 + k % 200)
        with open(os.path.join(args.out, "res-%06d.hpr" % k), "wb") as f:
            f.write(text.encode("latin-1"))


if __name__ == "__main__":
    main()
