"""Benchmark the first README command's pipeline part on this machine, and say where the time goes.

Clones the committed HEAD into a temporary directory (so nothing is reused), links the
project's environment, runs ``snakemake --cores 8 all`` and reports: job count, wall time, peak
memory (the largest single process, and the whole machine's used memory sampled every 0.5 s), the
CPU seconds of all its processes (``cpu_s``: what another load on the machine does not inflate), and
where the time goes:

- ``rules``: per Snakemake rule, jobs and summed job seconds (start to finish in Snakemake's log);
- ``training_jobs``: inside the train jobs, summed over jobs and seeds, the seconds each process
  spent starting (interpreter and imports), loading the feature store, setting a run up (masks,
  frozen features, model), training, evaluating (val and test every epoch) and saving resume state
  (from each run's ``provenance.json``), and the rest (writing results, publishing);
- ``run_s_per_method``: mean seconds per run (one seed) per method and phase.

Summed job seconds exceed the wall time when jobs run in parallel (``--cores``).

    uv run python bench/pipeline.py [--keep] [--cores 8] [--configfile FILE] [--write]

``--write`` (default config only) saves the figures to ``bench/results/pipeline.json``, from which
``python -m mla readme`` writes the README's timing sentence.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def used_mib() -> float:
    info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    kib = lambda k: float(info[k].split()[0])  # noqa: E731
    return (kib("MemTotal") - kib("MemAvailable")) / 1024


def startup_s(cwd: Path, env: dict) -> float:
    """Seconds a job spends before any work: Python + torch + the training modules."""
    times = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import mla.train"], cwd=cwd, env=env, check=True)
        times.append(time.perf_counter() - t)
    return min(times)


def rule_seconds(log: str) -> dict[str, dict]:
    """Per rule: jobs and summed seconds from start to finish, read from Snakemake's log (a
    ``[timestamp]`` line precedes each ``rule``/``localrule`` block and each ``Finished jobid``)."""
    stamp, rule, started, names = None, None, {}, {}
    per_rule: dict[str, dict] = {}
    for line in log.splitlines():
        line = line.strip()
        if m := re.fullmatch(r"\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]", line):
            stamp = time.mktime(time.strptime(m.group(1), "%a %b %d %H:%M:%S %Y"))
        elif m := re.fullmatch(r"(?:local)?rule (\w+):", line):
            rule = m.group(1)
        elif (m := re.fullmatch(r"jobid: (\d+)", line)) and rule is not None:
            started[m.group(1)], names[m.group(1)], rule = stamp, rule, None
        elif (m := re.match(r"Finished jobid: (\d+)", line)) and m.group(1) in started:
            name = names[m.group(1)]
            entry = per_rule.setdefault(name, {"jobs": 0, "job_s": 0.0})
            entry["jobs"] += 1
            entry["job_s"] = round(entry["job_s"] + stamp - started[m.group(1)], 1)
    return per_rule


def time_breakdown(proj: Path, log: str) -> dict:
    """Where the time went: per rule (Snakemake's log), inside the training jobs and per method
    (each run's ``provenance.json``)."""
    parts = {"startup": 0.0, "load": 0.0, "setup": 0.0, "train": 0.0, "eval": 0.0, "save": 0.0, "rest": 0.0}
    per_method: dict[str, list[float]] = {}
    seen_jobs = set()
    for prov in sorted(proj.glob("results/*/*/*/*/seed*/provenance.json")):
        info = json.loads(prov.read_text())
        seconds = dict(info.get("seconds", {}))
        job = seconds.pop("job", {})
        if prov.parent.parent not in seen_jobs:  # per job: start-up and loading happen once
            seen_jobs.add(prov.parent.parent)
            for k in ("startup", "load"):
                parts[k] += job.get(k) or 0.0
        for k, v in seconds.items():
            parts[k] += v
        parts["rest"] += max(0.0, info["wall_s"] - sum(seconds.values()))
        phase, tag = prov.parts[-5], prov.parts[-3].split("-")[0]
        per_method.setdefault(f"{phase}/{tag}", []).append(info["wall_s"])
    return {
        "rules": rule_seconds(log),
        "training_jobs": {"jobs": len(seen_jobs), **{f"{k}_s": round(v, 1) for k, v in parts.items()}},
        "run_s_per_method": {k: round(sum(v) / len(v), 1) for k, v in sorted(per_method.items())},
    }


def require_bytecode() -> None:
    """Stop unless torch's bytecode is compiled in this environment: without it (``uv sync`` without
    ``UV_COMPILE_BYTECODE=1`` where ``PYTHONDONTWRITEBYTECODE`` is set) every job compiles torch's
    sources again, about 3 s a job, 2 minutes of the default grid's wall time on two cores, a cost
    the README's command (which sets ``UV_COMPILE_BYTECODE=1``) does not have."""
    import importlib.util
    origin = importlib.util.find_spec("torch").origin  # finds, imports nothing
    if not Path(importlib.util.cache_from_source(origin)).exists():
        raise SystemExit(f"bench/pipeline.py: {origin} has no compiled bytecode, so every job would compile "
                         "torch again and the figures would not be the README command's; run "
                         "`UV_COMPILE_BYTECODE=1 uv sync --locked --extra dev` first")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", default="8")
    ap.add_argument("--keep", action="store_true", help="keep the temporary clone")
    ap.add_argument("--configfile", help="config overlay, relative to the repository root (default: none)")
    ap.add_argument("--write", action="store_true", help="save the figures to bench/results/pipeline.json")
    args = ap.parse_args()
    require_bytecode()
    tmp = Path(tempfile.mkdtemp(prefix="mla-bench-"))
    proj = tmp / "project"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(proj)], check=True)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    overlay = ["--configfile", args.configfile] if args.configfile else []
    dry = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--workflow-profile", "none", "all", *overlay], cwd=proj,
                         env=env, capture_output=True, text=True, check=True)
    totals = re.findall(r"^total\s+(\d+)", dry.stdout + dry.stderr, flags=re.M)
    baseline = used_mib()
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], used_mib())
            time.sleep(0.5)

    threading.Thread(target=sample, daemon=True).start()
    cpu = lambda: (lambda r: r.ru_utime + r.ru_stime)(resource.getrusage(resource.RUSAGE_CHILDREN))  # noqa: E731
    cpu_before = cpu()
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "snakemake", "--cores", args.cores, "all", *overlay], cwd=proj,
                         env=env, capture_output=True, text=True)
    (proj / "pipeline-bench.log").write_text(out.stdout + out.stderr)
    wall = time.perf_counter() - start
    cpu_s = cpu() - cpu_before  # every process of the run: contention from other work hardly changes it
    done.set()
    if out.returncode:
        sys.exit(f"snakemake failed:\n{out.stderr[-5000:]}")
    result = {
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=proj, capture_output=True, text=True,
                                 check=True).stdout.strip(),
        "cores": args.cores,
        "jobs": int(totals[-1]) if totals else None,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu_s, 1),
        "startup_s_per_job": round(startup_s(proj, env), 2),
        "peak_single_process_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "peak_machine_used_mib_above_baseline": round(peak[0] - baseline, 1),
        "cpus": os.cpu_count(),
    }
    logs = sorted((proj / ".snakemake" / "log").glob("*.snakemake.log"))  # the complete log (the console is a bar)
    result.update(time_breakdown(proj, logs[-1].read_text() if logs else ""))
    print(json.dumps(result, indent=2))
    if args.write:
        if args.configfile:
            sys.exit("--write records the default config's figures: leave out --configfile")
        (ROOT / "bench" / "results").mkdir(exist_ok=True)
        (ROOT / "bench" / "results" / "pipeline.json").write_text(json.dumps(result, indent=2) + "\n")
    if args.keep:
        print(f"kept {proj}")
    else:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
