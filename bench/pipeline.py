"""Benchmark the first README command's pipeline part on this machine.

Clones the committed HEAD into a temporary directory (so nothing is reused), links the
project's environment, runs ``snakemake --cores 8 all`` and reports: job count, per-job
start-up time (importing the training stack), wall time, and peak memory (the largest
single process, and the whole machine's used memory sampled every 0.5 s).

    uv run python bench/pipeline.py [--keep] [--cores 8]
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", default="8")
    ap.add_argument("--keep", action="store_true", help="keep the temporary clone")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mla-bench-"))
    proj = tmp / "project"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(proj)], check=True)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    dry = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--workflow-profile", "none", "all"], cwd=proj,
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
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "snakemake", "--cores", args.cores, "all"], cwd=proj, env=env,
                         capture_output=True, text=True)
    wall = time.perf_counter() - start
    done.set()
    if out.returncode:
        sys.exit(f"snakemake failed:\n{out.stderr[-5000:]}")
    result = {
        "jobs": int(totals[-1]) if totals else None,
        "wall_s": round(wall, 1),
        "startup_s_per_job": round(startup_s(proj, env), 2),
        "peak_single_process_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "peak_machine_used_mib_above_baseline": round(peak[0] - baseline, 1),
        "cpus": os.cpu_count(),
        "train_wall_s_per_run": {},
    }
    per_method: dict[str, list[float]] = {}
    for prov in proj.glob("results/*/*/*/*/seed*/provenance.json"):
        tag = prov.parts[-3].split("-")[0]
        per_method.setdefault(tag, []).append(json.loads(prov.read_text())["wall_s"])
    result["train_wall_s_per_run"] = {k: round(sum(v) / len(v), 1) for k, v in sorted(per_method.items())}
    print(json.dumps(result, indent=2))
    if args.keep:
        print(f"kept {proj}")
    else:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
