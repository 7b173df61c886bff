#!/usr/bin/python3
"""make bench's report: one JSON file, a markdown table and the plots.

    bench/report.py RESULTS_DIR

reads what bench/run.sh left in RESULTS_DIR:

    <bench>.json            Google Benchmark's own JSON (--benchmark_out)
    sqlite_figures.json     the SQLite bench's tables (sqlite_bench.cc,
                            WriteFiguresJson)
    trace-*-commits.dat     the writer's commits around a copy (end s, ms)
    trace-*-wal.dat         the WAL's size over the same time (s, MB)

and writes there

    latest.json   the machine, the date, every benchmark row with its
                  counters, every SQLite figure
    latest.md     the same as markdown tables (the README's Performance
                  section is pasted from it)
    *.png         the plots (gnuplot): the writer's commit latency over time
                  during each live SQLite scenario, cowbackup beside
                  VACUUM INTO and .backup, with the copy's span marked; the
                  WAL's size over time; the frontier of backup time against
                  the writer's share.

Nothing here is typed by hand: every figure and every point comes from the
files above. Exits non-zero, naming the file, if one is missing or unreadable.
"""

import datetime
import glob
import json
import os
import platform
import re
import shutil
import subprocess
import sys

BENCHES = ("engine_bench", "sqlite_bench", "lmdb_bench")


def die(msg):
    sys.stderr.write("report.py: %s\n" % msg)
    sys.exit(1)


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        die("%s: %s" % (path, e))


def first_line(path, prefix=""):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(prefix):
                    return line[len(prefix):].strip()
    except OSError:
        pass
    return ""


def machine(results):
    """What the figures were measured on."""
    cpu = first_line("/proc/cpuinfo", "model name").lstrip(": ")
    mem_kb = first_line("/proc/meminfo", "MemTotal:").split()
    os_name = first_line("/etc/os-release", "PRETTY_NAME=").strip('"')
    disk = ""
    try:
        st = os.stat(results)
        base = "/sys/dev/block/%d:%d" % (os.major(st.st_dev), os.minor(st.st_dev))
        # A partition's model is its parent disk's.
        for d in (base, base + "/.."):
            model = first_line(d + "/device/model")
            if model:
                disk = model
                break
        rot = first_line(os.path.realpath(base) + "/../queue/rotational") or \
            first_line(base + "/queue/rotational")
        if rot:
            disk += (" (rotational)" if rot == "1" else " (non-rotational)")
    except OSError:
        pass
    fs = ""
    try:
        fs = subprocess.run(["stat", "-f", "-c", "%T", results], capture_output=True,
                            text=True, check=False).stdout.strip()
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(int(mem_kb[0]) / 2**20, 1) if mem_kb else None,
        "os": os_name,
        "kernel": platform.release(),
        "disk": disk.strip(),
        "filesystem": fs,
    }


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def bench_rows(results):
    """Each benchmark's row: with COWBACKUP_BENCH_RUNS > 1 the median of its
    runs, and for every figure the spread [min, max] beside it."""
    out = {}
    skip = {"name", "run_name", "run_type", "repetitions", "repetition_index", "threads",
            "iterations", "family_index", "per_family_instance_index", "aggregate_name",
            "aggregate_unit", "time_unit", "real_time", "cpu_time"}
    for name in BENCHES:
        path = os.path.join(results, name + ".json")
        if not os.path.exists(path):
            continue
        data = read_json(path)
        runs = {}
        for b in data.get("benchmarks", []):
            if b.get("run_type") == "aggregate":
                continue  # medians are taken here, with their spread
            runs.setdefault(b.get("run_name", b["name"]), []).append(b)
        rows = []
        for run_name, bs in runs.items():
            keys = [k for k, v in bs[0].items() if k not in skip and isinstance(v, (int, float))]
            figures = {"real_time": [b.get("real_time", 0) for b in bs]}
            for k in keys:
                figures[k] = [b[k] for b in bs if k in b]
            rows.append({
                "name": run_name,
                "runs": len(bs),
                "time_unit": bs[0].get("time_unit"),
                "real_time": median(figures["real_time"]),
                "counters": {k: median(figures[k]) for k in keys},
                "spread": {k: [min(v), max(v)] for k, v in figures.items()},
            })
        out[name] = {"context": data.get("context", {}), "rows": rows}
    return out


def fmt(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return "%.4g" % v
    return str(v)


def markdown(report):
    lines = ["# cowbackup benchmarks", "",
             "%s, %s. Machine: %s, %s cores, %s GiB, %s, kernel %s; disk: %s (%s)." % (
                 report["date"], "quick run (small sizes)" if report["quick"] else "full sizes",
                 report["machine"]["cpu"], report["machine"]["cores"], report["machine"]["memory_gib"],
                 report["machine"]["os"], report["machine"]["kernel"], report["machine"]["disk"] or "?",
                 report["machine"]["filesystem"]), ""]
    fig = report.get("sqlite_figures")
    if fig:
        for mode, title in (("rollback", "rollback journal"), ("wal", "WAL mode")):
            rows = [f for f in fig["figures"] if f["mode"] == mode]
            if not rows:
                continue
            lines += ["## SQLite, %s, %d MB database" % (title, fig["database_mb"]), "",
                      "| figure | value |", "|---|---|"]
            for f in rows:
                indent = "" if f["section"] == f["name"] else "&nbsp;&nbsp;"
                lines.append("| %s%s | %s |" % (indent, f["name"], f["text"]))
            lines.append("")
    for name, b in report["benchmarks"].items():
        if not b["rows"]:
            continue
        keys = []
        for r in b["rows"]:
            keys += [k for k in r["counters"] if k not in keys]
        runs = max(r["runs"] for r in b["rows"])
        lines += ["## %s%s" % (name, " (median of %d runs; latest.json has the spread)" % runs
                               if runs > 1 else ""), "",
                  "| benchmark | time | " + " | ".join(keys) + " |",
                  "|---|---|" + "---|" * len(keys)]
        for r in b["rows"]:
            lines.append("| %s | %s %s | %s |" % (
                r["name"], fmt(r["real_time"]), r["time_unit"] or "",
                " | ".join(fmt(r["counters"].get(k)) for k in keys)))
        lines.append("")
    plots = report.get("plots", [])
    if plots:
        lines += ["## Plots", ""] + ["![%s](%s)" % (p, p) for p in plots] + [""]
    return "\n".join(lines)


def copy_span(path):
    """The '# copy START END' line of a trace file: (start, end) seconds."""
    span = first_line(path, "# copy ").split()
    if len(span) != 2:
        die("%s: no '# copy START END' line" % path)
    return float(span[0]), float(span[1])


def gnuplot(script, results):
    if shutil.which("gnuplot") is None:
        die("gnuplot is not installed (the Debian package gnuplot-nox; make bench installs it)")
    r = subprocess.run(["gnuplot"], input=script, text=True, cwd=results, capture_output=True)
    if r.returncode != 0:
        die("gnuplot failed: %s" % r.stderr.strip())


def plots(results, report):
    made = []
    scenarios = (("cowbackup", "cowbackup"), ("vacuum_into", "VACUUM INTO"), ("dot_backup", ".backup"))
    for mode, title in (("rollback", "rollback journal"), ("wal", "WAL mode")):
        traces = [(s, t, "trace-%s-%s-commits.dat" % (s, mode)) for s, t in scenarios]
        traces = [x for x in traces if os.path.exists(os.path.join(results, x[2]))]
        if not traces:
            continue
        png = "latency-%s.png" % mode
        # One panel per method, the copy's span shaded: the same time axis
        # (seconds from the copy's start) and a log latency axis.
        script = ["set terminal pngcairo size 1000,%d font ',10' noenhanced" % (260 * len(traces)),
                  "set output '%s'" % png,
                  "set multiplot layout %d,1 title 'Writer commit latency during a backup, SQLite %s'"
                  % (len(traces), title),
                  "set logscale y", "set ylabel 'commit ms'", "set grid",
                  "set key top right"]
        for i, (_, label, path) in enumerate(traces):
            start, end = copy_span(os.path.join(results, path))
            if i == len(traces) - 1:
                script.append("set xlabel 'seconds from the start of the backup'")
            script += ["unset object",
                       "set object 1 rect from %f, graph 0 to %f, graph 1 fc rgb '#dde8ff' fs solid 0.5 behind"
                       % (start, end),
                       "plot '%s' using 1:2 with points pt 7 ps 0.3 title '%s (copy shaded: %.2f s)'"
                       % (path, label, end - start)]
        script.append("unset multiplot")
        gnuplot("\n".join(script) + "\n", results)
        made.append(png)
        wal = [(t, "trace-%s-wal-wal.dat" % s) for s, t in scenarios]
        wal = [x for x in wal if os.path.exists(os.path.join(results, x[1]))]
        if mode == "wal" and wal:
            png = "wal-size.png"
            script = ["set terminal pngcairo size 1000,360 font ',10' noenhanced", "set output '%s'" % png,
                      "set title 'WAL size during a backup (wal-index mxFrame)'",
                      "set xlabel 'seconds from the start of the backup'", "set ylabel 'WAL MB'",
                      "set grid", "set key top right"]
            script.append("plot " + ", ".join("'%s' using 1:2 with lines title '%s'" % (p, t) for t, p in wal))
            gnuplot("\n".join(script) + "\n", results)
            made.append(png)
    made += frontier(results, report)
    return made


def frontier(results, report):
    """Backup time against the writer's share: one point per pacing setting
    (cowbackup) and per chunk size (the ideal copier)."""
    rows = report["benchmarks"].get("sqlite_bench", {}).get("rows", [])
    cow, ideal = [], []
    for r in rows:
        c = r["counters"]
        if "vs_idle" not in c or "writer_tps_ratio" not in c:
            continue
        m = re.match(r"BM_CowbackupUnderWriter/(\d+)/(\d+)/0/", r["name"])
        if m:
            label = {"1": "yield", "2": "pace"}.get(m.group(2)) or \
                ("%s MB/s" % m.group(1) if m.group(1) != "0" else "unthrottled")
            cow.append((c["writer_tps_ratio"] * 100, c["vs_idle"], label))
        elif r["name"].startswith("BM_IdealCopyUnderWriter/"):
            ideal.append((c["writer_tps_ratio"] * 100, c["vs_idle"], r["name"].split("/")[1] + " KiB"
                          + (" gated" if r["name"].split("/")[2] == "1" else "")))
    if not cow:
        return []
    with open(os.path.join(results, "frontier.dat"), "w") as f:
        f.write("# writer_share_pct time_vs_idle label (cowbackup, then the ideal copier)\n")
        for p in cow:
            f.write('%f %f "%s"\n' % p)
        f.write("\n\n")
        for p in ideal:
            f.write('%f %f "%s"\n' % p)
    png = "frontier.png"
    script = ["set terminal pngcairo size 800,500 font ',10' noenhanced", "set output '%s'" % png,
              "set title 'Backup time against the writer''s share (SQLite, rollback journal)'",
              "set xlabel 'writer throughput during the backup, % of before'",
              "set ylabel 'backup time / idle backup time'", "set grid", "set key top left",
              "plot 'frontier.dat' index 0 using 1:2 with points pt 7 ps 1.2 title 'cowbackup', "
              "'' index 0 using 1:2:3 with labels offset 0,1 notitle, "
              "'' index 1 using 1:2 with points pt 6 ps 1.2 title 'ideal O_DIRECT copier (no consistency)', "
              "'' index 1 using 1:2:3 with labels offset 0,-1 notitle"]
    gnuplot("\n".join(script) + "\n", results)
    return [png]


def main():
    if len(sys.argv) != 2:
        die("usage: report.py RESULTS_DIR")
    results = sys.argv[1]
    if not os.path.isdir(results):
        die("%s: not a directory" % results)
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": os.environ.get("COWBACKUP_BENCH_QUICK") == "1",
        "machine": machine(results),
        "benchmarks": bench_rows(results),
    }
    if not report["benchmarks"]:
        die("%s: no benchmark output (%s)" % (results, ", ".join(b + ".json" for b in BENCHES)))
    fig = os.path.join(results, "sqlite_figures.json")
    if os.path.exists(fig):
        report["sqlite_figures"] = read_json(fig)
    report["plots"] = plots(results, report)
    with open(os.path.join(results, "latest.json"), "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    with open(os.path.join(results, "latest.md"), "w") as f:
        f.write(markdown(report) + "\n")
    print("report.py: wrote %s/latest.json, latest.md and %d plots" % (results, len(report["plots"])))


if __name__ == "__main__":
    main()
