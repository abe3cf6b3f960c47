"""Seconds per run of every missing-modality baseline that trains on frozen unimodal features.

    uv run python bench/frozen_cost.py --datasets builtin_ait --rate 0.4 [--epochs 2]

Needs the feature stores (``snakemake --cores 2 phase_data``). In a temporary directory (nothing is
written under results/), trains the dataset's ``unimodal`` runs of the missing phase at ``--rate`` for
``--epochs`` epochs (their cost is not the baselines'), then times one whole run (the config's training
settings with ``missing.frozen_training`` over them, feature extraction included) of every frozen-feature
method, on one thread, one seed.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from mla import catalog, config, grid
from mla.train import load_dataset, mark_complete, set_threads, train_run, write_run


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
            ds = load_dataset(cfg, d)
            jobs = [j for j in grid.jobs(cfg) if j.phase == "missing" and j.dataset == d]
            uni_cfg = {**cfg, "training": {**cfg["training"], "epochs": args.epochs}}
            for job in (j for j in jobs if j.method == "unimodal"):
                metrics, log, state, masks = train_run(uni_cfg, job, ds, 0)
                write_run(job.runs[0].run_dir, uni_cfg, metrics, log, state, masks, 0.0, root=Path(tmp) / "results")
                mark_complete(job, root=Path(tmp) / "results")  # frozen-feature jobs read finished runs only
            for job in (j for j in jobs if catalog.METHODS[j.method].frozen_features):
                start = time.perf_counter()
                metrics, *_ = train_run(cfg, job, ds, 0)
                print(f"{d:12s} {job.tag:18s} {time.perf_counter() - start:6.2f} s/run "
                      f"({cfg['training']['epochs']} epochs; test multi {metrics['test']['multi']:.2f})", flush=True)
    os.chdir(repo)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--datasets", nargs="+", default=["builtin_ait"])
    ap.add_argument("--rate", type=float, default=0.4)
    ap.add_argument("--epochs", type=int, default=2, help="epochs of the unimodal runs the baselines reuse")
    args = ap.parse_args()
    set_threads(1)
    frozen_costs(args)


if __name__ == "__main__":
    main()
