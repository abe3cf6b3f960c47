"""Provenance recorded with every result: code version, environment, device.

``static_provenance`` goes into ``metrics.json`` (no timestamps or host names, so the same job
run twice on the same machine writes the same file); wall time, peak memory and host go into
a separate ``provenance.json``.
"""
from __future__ import annotations

import hashlib
import os
import platform
import resource
import socket
import subprocess
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path

PACKAGES = ("torch", "torchvision", "torchaudio", "numpy", "snakemake", "dvc")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, check=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


@lru_cache(maxsize=1)
def static_provenance() -> dict:
    """Git commit and dirty flag (tracked changes outside ``reports/``), lock-file hash, library
    versions, Python version."""
    lock = Path("uv.lock")
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    # Tracked files the pipeline itself rewrites (reports/<name>/readme.md, the README's results
    # block) are outputs, not changes to what produced the runs: they do not make the tree dirty.
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ":(top)", ":(top,exclude)reports")
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "lock_sha256": hashlib.sha256(lock.read_bytes()).hexdigest() if lock.exists() else None,
        "python": platform.python_version(),
        "versions": versions,
    }


def process_age_s() -> float | None:
    """Seconds since this process started (interpreter start-up and imports included), from
    ``/proc/self/stat``; None where there is no ``/proc``."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of proc(5): starttime, in clock ticks since boot
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return None
    return round(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 3)


def runtime_provenance(wall_s: float) -> dict:
    """Wall time, peak resident memory (MiB) and host: never in byte-compared files."""
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "wall_s": round(wall_s, 2),
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "host": socket.gethostname(),
        "argv": sys.argv,
    }
