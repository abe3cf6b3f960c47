"""Load every run's metrics and per-epoch log through the grid, and aggregate over seeds.

A metrics file missing for a job in the grid is an error naming the path: a table built from
part of the grid would look complete while it is not.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from mla import grid, real_paths


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation (ddof=1) over seeds; ``std`` is None for one seed."""

    mean: float
    std: float | None
    n: int

    def fmt(self, digits: int = 2) -> str:
        """``"81.20 ± 0.50"``; a single seed shows the mean alone."""
        if self.std is None:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"

    def as_dict(self, digits: int = 4) -> dict:
        return {
            "mean": round(self.mean, digits),
            "std": None if self.std is None else round(self.std, digits),
            "n": self.n,
        }


def stat(values: Iterable[float]) -> Stat | None:
    """Stat of ``values``; None when there are none."""
    v = [float(x) for x in values]
    if not v:
        return None
    mean = math.fsum(v) / len(v)
    if len(v) < 2:
        return Stat(mean, None, len(v))
    return Stat(mean, math.sqrt(math.fsum((x - mean) ** 2 for x in v) / (len(v) - 1)), len(v))


@dataclass(frozen=True)
class JobResult:
    """One job of the grid with its runs' metrics and logs, in seed order."""

    job: grid.Job
    metrics: tuple[dict, ...]
    logs: tuple[tuple[dict, ...], ...]

    def stat(self, get: Callable[[dict], float | None]) -> Stat | None:
        """Stat over seeds of ``get(metrics)``; None unless every seed has a value."""
        vals = [get(m) for m in self.metrics]
        if any(v is None for v in vals):
            return None
        return stat(vals)

    def acc(self, split: str, key: str) -> Stat | None:
        """Stat of ``metrics[split][key]`` (e.g. ``acc("test", "multi")``)."""
        return self.stat(lambda m: (m.get(split) or {}).get(key))


def read_json(path: Path) -> dict:
    """A JSON file; a missing file is an error naming it."""
    if not path.exists():
        raise FileNotFoundError(f"missing result file {path} (expected by the grid)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"unreadable JSON in {path}: {exc}") from None


def read_log(path: Path) -> tuple[dict, ...]:
    """The per-epoch records of a ``log.jsonl`` file."""
    if not path.exists():
        raise FileNotFoundError(f"missing result file {path} (expected by the grid)")
    out = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"unreadable line {i} in {path}: {exc}") from None
    return tuple(out)


def load_job(job: grid.Job) -> JobResult:
    """Metrics and logs of every seed of ``job``; checks each file belongs to its run."""
    metrics, logs = [], []
    for run in job.runs:
        path = Path(run.run_dir) / "metrics.json"
        m = read_json(path)
        if m.get("job") != job.id or m.get("seed") != run.seed:
            raise ValueError(
                f"{path} holds job {m.get('job')!r} seed {m.get('seed')!r}, expected {job.id!r} seed {run.seed}"
            )
        metrics.append(m)
        logs.append(read_log(Path(run.run_dir) / "log.jsonl"))
    return JobResult(job, tuple(metrics), tuple(logs))


def collect(cfg: dict) -> dict[str, JobResult]:
    """Every job of the grid by id (grid order), with its runs' metrics and logs."""
    return {j.id: load_job(j) for j in grid.jobs(cfg)}


def gap_stats(doc: dict) -> dict[str, dict[str, Stat]]:
    """Method -> modality pair (and ``mean``) -> Stat of the modality gap over the seeds of a
    ``gap.json`` (``gap_per_seed``); an analysis without it gives its one seed's gap (n = 1)."""
    per_seed = doc.get("gap_per_seed") or {}
    if per_seed:
        return {m: {k: stat(g[k] for g in by_seed.values()) for k in next(iter(by_seed.values()))}
                for m, by_seed in per_seed.items() if by_seed}
    return {m: {k: Stat(float(v), None, 1) for k, v in g.items()} for m, g in doc.get("gap", {}).items()}


def load_gaps(cfg: dict) -> dict[str, dict]:
    """``gap.json`` of every analysed dataset."""
    return {d: read_json(Path(grid.analysis_dir(cfg, d)) / "gap.json") for d in cfg["analysis"]["datasets"]}


def load_released_scores(cfg: dict) -> dict[str, dict]:
    """``metrics.json`` of each authors' checkpoint listed under ``released_checkpoints``, as
    ``mla score-released`` wrote it (mla/score_released.py)."""
    res = grid.results_dir(cfg)
    return {d: read_json(Path(real_paths.released_scores_dir(res, d)) / "metrics.json")
            for d in sorted(real_paths.released_checkpoints(cfg))}


def provenance(results: dict[str, JobResult]) -> dict:
    """Commits, lock hashes, devices and selection protocols over all runs (sorted, no times)."""
    prov = [m.get("provenance") or {} for r in results.values() for m in r.metrics]
    sel = [m.get("selection") for r in results.values() for m in r.metrics]

    def distinct(key: str) -> list:
        return sorted({str(p.get(key)) for p in prov if p.get(key) is not None})

    first = prov[0] if prov else {}
    return {
        "git_commits": distinct("git_commit"),
        "git_dirty_runs": sum(bool(p.get("git_dirty")) for p in prov),
        "lock_sha256": distinct("lock_sha256"),
        "devices": distinct("device"),
        "threads": distinct("threads"),
        "versions": first.get("versions") or {},
        "selection": sorted({str(s) for s in sel}),
        "n_runs": len(prov),
    }
