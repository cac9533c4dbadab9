#!/usr/bin/env python3
"""Gathers a search benchmark run (run.sh's work folder) into one JSON file and markdown tables.

  report.py --work DIR [--json OUT.json] [--md OUT.md] [--from OUT.json]

With --from, reads a JSON file written earlier instead of a work folder (to print the tables
again). The markdown goes to stdout as well.
"""

import argparse
import glob
import json
import os
import sys

VARIANTS = ("shipped", "analyzed")
LATENCY_COLUMNS = [
    ("read", "read by id"),
    ("q1", "Q1 subject+code"),
    ("q2_first", "Q2 first page"),
    ("q2_next", "Q2 next pages"),
]
OTHER_COLUMNS = [
    ("q4_name", "name prefix"),
    ("q4_identifier", "identifier"),
    ("q4_birthdate", "birthdate year"),
    ("q4_chain", "chain"),
    ("q4_has", "_has"),
    ("q4_sort", "code, _sort=-date"),
    ("q4_subject_sort", "subject, _sort=-date"),
]
TARGETS = {"q1": ("p99", 20.0), "q2_first": ("p99", 50.0), "q2_next": ("p99", 50.0)}
Q3_TARGET = 20000.0


def read_json(path):
    with open(path) as f:
        return json.load(f)


def gather(work):
    run = read_json(os.path.join(work, "run.json"))
    stages = []
    for d in sorted(glob.glob(os.path.join(work, "stage-*")), key=lambda p: int(p.rsplit("-", 1)[1])):
        if not os.path.exists(os.path.join(d, "stage.json")):
            continue
        st = read_json(os.path.join(d, "stage.json"))
        for part in ("load-patients", "load-observations"):
            p = os.path.join(d, part + ".json")
            if os.path.exists(p):
                st[part.replace("-", "_")] = read_json(p)
        st["variants"] = {}
        for v in VARIANTS:
            p = os.path.join(d, v + ".json")
            if not os.path.exists(p):
                continue
            m = read_json(p)
            meta = os.path.join(d, v + ".meta.json")
            if os.path.exists(meta):
                m.update(read_json(meta))
            t = os.path.join(d, v + ".timeouts")
            m["timeouts"] = open(t).read().split() if os.path.exists(t) else []
            st["variants"][v] = m
        stages.append(st)
    ab = []
    for p in sorted(glob.glob(os.path.join(work, "bundle-ab", "*.json")), key=lambda p: os.path.basename(p)):
        if p.endswith(".meta.json"):
            continue
        x = read_json(p)
        meta = p[:-5] + ".meta.json"
        if os.path.exists(meta):
            x.update(read_json(meta))
        ab.append(x)
    ab.sort(key=lambda x: x["first"])
    return {"run": run, "stages": stages, "bundle_ab": ab}


def fmt_ms(x):
    if x is None:
        return "-"
    if x >= 100:
        return "%.0f" % x
    if x >= 10:
        return "%.1f" % x
    return "%.2f" % x


def fmt_n(n):
    if n >= 1000000 and n % 1000000 == 0:
        return "%dM" % (n // 1000000)
    if n >= 1000 and n % 1000 == 0:
        return "%dk" % (n // 1000)
    return "{:,}".format(n)


def cell(m, name, timeout, first_timeout):
    """'p50 / p99' of a query kind in a variant's measurement, or why it is missing."""
    if name in m.get("queries", {}):
        r = m["queries"][name]
        if r.get("count"):
            return "%s / %s" % (fmt_ms(r["p50"]), fmt_ms(r["p99"]))
    if name in m.get("timeouts", []) or (name == "q2_next" and "q2_first" in m.get("timeouts", [])):
        return "> %g s" % timeout
    if name in first_timeout:
        return "(> %g s at %s)" % (timeout, fmt_n(first_timeout[name]))
    return "-"


def ratio(m, name, base):
    r = m.get("queries", {}).get(name)
    if not r or not r.get("count") or not base:
        return "-"
    return "%.1f" % (r["p50"] / base)


def markdown(data):
    run, stages = data["run"], data["stages"]
    s = run["settings"]
    timeout = s["timeout"]
    out = []
    w = out.append
    w("# Search at scale (`bench/search/run.sh`, %s)" % run["stamp"])
    w("")
    w("Machine: %s, %d cores, %.1f GiB, Linux %s. Gateway %s (binary built %s; HEAD %s when the run started). "
      "Python %s, sqlite3 CLI %s."
      % (run["cpu"], run["cores"], run["memory_kb"] / 1048576.0, run["kernel"], run["version"], run["binary_built"],
         run["commit"], run["python"], run["sqlite_cli"]))
    w("")
    w("Dataset: %s Patients written first, then Observations up to each stage (seed %d); transaction Bundles of "
      "%d PUTs, %d loader processes. Per search kind: up to %d samples or %g s after %d warm-up requests, one "
      "client, keep-alive; q3 pages through up to %s resources %d times; %d concurrent clients for %g s."
      % ("{:,}".format(s["patients"]), s["seed"], s["bundle"], s["load_clients"], s["samples"], s["seconds"],
         s["warmup"], "{:,}".format(s["page_target"]), s["passes"], s["clients"], s["concurrent_seconds"]))
    w("")

    w("## Load")
    w("")
    w("| stage (Observations) | written | resources/s | Bundle p50 | DB + WAL | gateway RSS | load avg before / after load | stage wall time |")
    w("|---:|---:|---:|---:|---:|---:|---|---:|")
    for st in stages:
        lo = st.get("load_observations", {})
        lp = st.get("load_patients")
        written = lo.get("resources", 0)
        rate = "%.0f" % lo["rate"] if lo.get("rate") else "-"
        if lp:
            rate += " (Patients: %.0f)" % lp["rate"]
            written_s = "%s + %s Patients" % ("{:,}".format(written), "{:,}".format(lp["resources"]))
        else:
            written_s = "{:,}".format(written)
        w("| %s | %s | %s | %s ms | %.2f GB | %.0f MB | %s / %s | %.0f s |"
          % (fmt_n(st["observations"]), written_s, rate, fmt_ms(lo.get("bundle_ms", {}).get("p50")),
             (st["db_bytes"] + st["wal_bytes"]) / 1e9, st["server_rss_kb"] / 1024.0, st["loadavg_before_load"],
             st["loadavg_after_load"], st["stage_wall_seconds"]))
    w("")

    for v in VARIANTS:
        if not any(v in st["variants"] for st in stages):
            continue
        title = "as shipped (no planner statistics)" if v == "shipped" else "after ANALYZE"
        first_timeout = {}
        w("## Searches, %s: p50 / p99 in ms" % title)
        w("")
        hdr = [c[1] for c in LATENCY_COLUMNS] + ["Q3 paging, resources/s"] + [c[1] for c in OTHER_COLUMNS]
        w("| stage | " + " | ".join(hdr) + " | CPU server / client / others |")
        w("|---:|" + "---:|" * len(hdr) + "---|")
        for st in stages:
            m = st["variants"].get(v)
            if m is None:
                continue
            cells = [cell(m, c[0], timeout, first_timeout) for c in LATENCY_COLUMNS]
            q3 = m.get("q3")
            if q3:
                cells.append("{:,.0f} ({:,} per pass)".format(q3["rate"], q3["passes"][0]["resources"]))
            else:
                cells.append("> %g s per page" % timeout if "q3" in m.get("timeouts", []) else "-")
            cells += [cell(m, c[0], timeout, first_timeout) for c in OTHER_COLUMNS]
            cpu = m.get("cpu_queries", {})
            w("| %s | %s | %.2f / %.2f / %.2f |" % (fmt_n(st["observations"]), " | ".join(cells), cpu.get("server", 0),
                                                    cpu.get("client", 0), cpu.get("others", 0)))
            for name in m.get("timeouts", []):
                first_timeout.setdefault(name, st["observations"])
                if name == "q2_first":
                    first_timeout.setdefault("q2_next", st["observations"])
        w("")
        w("Ratio of each search's p50 to the read-by-id p50 of the same run and stage:")
        w("")
        names = [c for c in LATENCY_COLUMNS[1:] + OTHER_COLUMNS]
        w("| stage | read p50 (ms) | " + " | ".join(c[1] for c in names) + " |")
        w("|---:|---:|" + "---:|" * len(names))
        for st in stages:
            m = st["variants"].get(v)
            if m is None:
                continue
            base = m.get("queries", {}).get("read", {}).get("p50")
            w("| %s | %s | %s |" % (fmt_n(st["observations"]), fmt_ms(base),
                                     " | ".join(ratio(m, c[0], base) for c in names)))
        w("")
        if any("concurrent" in st["variants"].get(v, {}) for st in stages):
            w("%d concurrent clients: requests/s, p50 / p99 ms:" % s["clients"])
            w("")
            w("| stage | read | Q1 | Q2 first page |")
            w("|---:|---|---|---|")
            for st in stages:
                m = st["variants"].get(v)
                if m is None or "concurrent" not in m:
                    continue
                cq = m["concurrent"]["queries"]
                row = []
                for name in ("read", "q1", "q2_first"):
                    r = cq.get(name)
                    if r:
                        row.append("{:,.0f}/s, {} / {}".format(r["rps"], fmt_ms(r["p50"]), fmt_ms(r["p99"])))
                    elif "concurrent:" + name in m.get("timeouts", []):
                        row.append("> %g s" % timeout)
                    else:
                        row.append("-")
                w("| %s | %s |" % (fmt_n(st["observations"]), " | ".join(row)))
            w("")
        last = [st for st in stages if v in st["variants"]][-1]
        m = last["variants"][v]
        checks = []
        for name, (stat, limit) in TARGETS.items():
            r = m.get("queries", {}).get(name)
            if r and r.get("count"):
                checks.append("%s %s %.1f ms (target %g: %s)" % (name, stat, r[stat], limit,
                                                                   "met" if r[stat] <= limit else "missed"))
            else:
                checks.append("%s timed out (target %g ms: missed)" % (name, limit))
        if m.get("q3"):
            checks.append("q3 %.0f resources/s (target %.0f: %s)" % (m["q3"]["rate"], Q3_TARGET,
                                                                      "met" if m["q3"]["rate"] >= Q3_TARGET else "missed"))
        w("Targets at %s Observations, %s: %s." % (fmt_n(last["observations"]), title, "; ".join(checks)))
        w("")
    ab = data.get("bundle_ab") or []
    if ab:
        w("## Load rate against Bundle size")
        w("")
        w("On the full database (%s Observations and more), %s Observations per size and round, sizes alternating:"
          % (fmt_n(stages[-1]["observations"]), "{:,}".format(ab[0]["resources"])))
        w("")
        w("| Bundle entries | round | resources/s | Bundle p50 / max | CPUs before | load avg after |")
        w("|---:|---:|---:|---|---|---|")
        for x in ab:
            w("| %d | %d | %.0f | %s / %s ms | %s | %s |" % (x["bundle"], x.get("round", 0), x["rate"],
                                                          fmt_ms(x["bundle_ms"]["p50"]), fmt_ms(x["bundle_ms"]["max"]),
                                                          x.get("quiet", "-"), x.get("loadavg", "-")))
        w("")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work")
    ap.add_argument("--from", dest="src")
    ap.add_argument("--json")
    ap.add_argument("--md")
    args = ap.parse_args()
    if args.src:
        data = read_json(args.src)
    elif args.work:
        data = gather(args.work)
    else:
        ap.error("--work or --from is needed")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(data, f, indent=1)
    md = markdown(data)
    if args.md:
        with open(args.md, "w") as f:
            f.write(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
