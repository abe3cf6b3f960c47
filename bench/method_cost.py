"""Per-epoch training cost of every method on every built-in dataset, and the grid it adds up to.

    uv run python bench/method_cost.py --datasets builtin_av builtin_it builtin_ait --epochs 2 [--set key=value ...]

Needs the feature stores (``snakemake --cores 2 phase_data``). Prints seconds per epoch
(training + the per-epoch evaluation) on one thread, one seed; then an estimate of the
training time of the config's whole grid (Tables 1-3): the sum, over the grid's training jobs
(missing-modality and ablation jobs included), of seconds per epoch of the job's dataset and
method x ``training.epochs`` x seeds, plus ``--job-overhead`` seconds per job (process start,
imports, data loading), divided by ``--cores`` as if the jobs packed perfectly. Jobs that
assemble other jobs' runs (late fusion) cost only their overhead. The data phase, the analysis
and the report are not included.
"""
from __future__ import annotations

import argparse
import time

from mla import catalog, config, grid
from mla.train import load_dataset, set_threads, train_run


def grid_estimate(cfg: dict, per_epoch: dict[tuple[str, str], float], job_overhead: float,
                  cores: int) -> tuple[float, int, int]:
    """(wall seconds, training jobs, runs) of the config's grid from measured seconds per epoch
    (``per_epoch[(dataset, tag)]`` with ``tag`` the train-phase job tag)."""
    total, n_jobs, n_runs = 0.0, 0, 0
    for job in grid.jobs(cfg):
        n_jobs += 1
        total += job_overhead
        if catalog.method_info(job.method).reuses:
            continue
        tag = job.tag if job.phase == "train" else (f"{job.method}-{job.modality}" if job.modality else job.method)
        if (job.dataset, tag) not in per_epoch:
            raise KeyError(f"no cost measured for {job.dataset} {tag} (job {job.id}): add it to --datasets/--methods")
        total += per_epoch[(job.dataset, tag)] * cfg["training"]["epochs"] * len(job.seeds)
        n_runs += len(job.seeds)
    return total / cores, n_jobs, n_runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--datasets", nargs="+", default=["builtin_av", "builtin_it", "builtin_ait"])
    ap.add_argument("--methods", nargs="+", default=[m for m in catalog.METHODS if not catalog.METHODS[m].reuses])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], help="config override key=value (repeatable)")
    ap.add_argument("--job-overhead", type=float, default=6.0, help="seconds per job outside training")
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args()
    full = config.load(args.config, args.set)
    cfg = config.load(args.config, args.set + [f"training.epochs={args.epochs}", "seeds=[0]",
                                               f"methods={args.methods}", f"datasets={args.datasets}",
                                               "analysis.datasets=[]", "missing.datasets=[]", "ablation.datasets=[]"])
    set_threads(1)
    per_epoch: dict[tuple[str, str], float] = {}
    for d in args.datasets:
        ds = load_dataset(d)
        for job in grid.jobs(cfg):
            if job.dataset != d:
                continue
            start = time.perf_counter()
            train_run(cfg, job, ds, 0)
            per_epoch[(d, job.tag)] = (time.perf_counter() - start) / args.epochs
            print(f"{d:12s} {job.tag:18s} {per_epoch[(d, job.tag)]:6.2f} s/epoch", flush=True)
    wall, n_jobs, n_runs = grid_estimate(full, per_epoch, args.job_overhead, args.cores)
    print(f"\ngrid of {args.config} ({' '.join(args.set)}): {n_jobs} jobs, {n_runs} trained runs of "
          f"{full['training']['epochs']} epochs; training about {wall / 60:.1f} min on {args.cores} cores "
          f"(+ {args.job_overhead:g} s per job), data phase, analysis and report not included")


if __name__ == "__main__":
    main()
