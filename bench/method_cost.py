"""Per-epoch training cost of every method on every built-in dataset (to size the grid), and the
cost per run of the missing-modality baselines that train on frozen features.

    uv run python bench/method_cost.py --datasets builtin_av builtin_it builtin_ait --epochs 2
    uv run python bench/method_cost.py --frozen --datasets builtin_ait --rate 0.4

Needs the feature stores (``snakemake --cores 2 phase_data``). Prints seconds per epoch
(training + the per-epoch evaluation) on one thread, one seed. With ``--frozen``: in a temporary
directory (nothing is written under results/), trains the dataset's ``unimodal`` runs of the
missing phase at ``--rate`` for ``--epochs`` epochs (their cost is not the baselines'), then times
one whole run (the config's ``training.epochs``, feature extraction included) of every
frozen-feature method.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from mla import catalog, config, grid
from mla.train import load_dataset, set_threads, train_run, write_run


def frozen_costs(args: argparse.Namespace) -> None:
    """Seconds per run of every frozen-feature method (on the reused unimodal runs' features)."""
    methods = [m for m in catalog.METHODS if catalog.METHODS[m].frozen_features]
    repo = Path.cwd()
    cfg = config.load(args.config, ["seeds=[0]", f"missing.datasets={args.datasets}", f"missing.rates=[{args.rate}]",
                                    f"missing.methods={methods}", "analysis.datasets=[]", "ablation.datasets=[]",
                                    f"datasets={args.datasets}", "methods=[unimodal]"])
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # runs land in tmp/results; the feature stores are read through a link
        (Path(tmp) / "data").symlink_to(repo / "data")
        for d in args.datasets:
            ds = load_dataset(d)
            jobs = [j for j in grid.jobs(cfg) if j.phase == "missing" and j.dataset == d]
            uni_cfg = {**cfg, "training": {**cfg["training"], "epochs": args.epochs}}
            for job in (j for j in jobs if j.method == "unimodal"):
                metrics, log, state, masks = train_run(uni_cfg, job, ds, 0)
                write_run(job.runs[0].run_dir, uni_cfg, metrics, log, state, masks, 0.0)
            for job in (j for j in jobs if catalog.METHODS[j.method].frozen_features):
                start = time.perf_counter()
                metrics, *_ = train_run(cfg, job, ds, 0)
                print(f"{d:12s} {job.tag:18s} {time.perf_counter() - start:6.2f} s/run "
                      f"({cfg['training']['epochs']} epochs; test multi {metrics['test']['multi']:.2f})", flush=True)
    os.chdir(repo)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--datasets", nargs="+", default=["builtin_av", "builtin_it", "builtin_ait"])
    ap.add_argument("--methods", nargs="+", default=[m for m in catalog.METHODS if not catalog.METHODS[m].reuses])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--frozen", action="store_true", help="time the frozen-feature methods per run")
    ap.add_argument("--rate", type=float, default=0.4, help="missing rate of --frozen")
    args = ap.parse_args()
    set_threads(1)
    if args.frozen:
        frozen_costs(args)
        return
    cfg = config.load(args.config, [f"training.epochs={args.epochs}", "seeds=[0]",
                                    f"methods={args.methods}", f"datasets={args.datasets}",
                                    "analysis.datasets=[]", "missing.datasets=[]", "ablation.datasets=[]"])
    for d in args.datasets:
        ds = load_dataset(cfg, d)
        for job in grid.jobs(cfg):
            if job.dataset != d:
                continue
            start = time.perf_counter()
            train_run(cfg, job, ds, 0)
            print(f"{d:12s} {job.tag:18s} {(time.perf_counter() - start) / args.epochs:6.2f} s/epoch", flush=True)


if __name__ == "__main__":
    main()
