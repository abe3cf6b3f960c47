"""Per-epoch training cost of every method on every built-in dataset (to size the grid).

    uv run python bench/method_cost.py --datasets builtin_av builtin_it builtin_ait --epochs 2

Needs the feature stores (``snakemake --cores 2 phase_data``). Prints seconds per epoch
(training + the per-epoch evaluation) on one thread, one seed.
"""
from __future__ import annotations

import argparse
import time

from mla import catalog, config, grid
from mla.train import load_dataset, set_threads, train_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--datasets", nargs="+", default=["builtin_av", "builtin_it", "builtin_ait"])
    ap.add_argument("--methods", nargs="+", default=[m for m in catalog.METHODS if not catalog.METHODS[m].reuses])
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    cfg = config.load(args.config, [f"training.epochs={args.epochs}", "seeds=[0]",
                                    f"methods={args.methods}", f"datasets={args.datasets}",
                                    "analysis.datasets=[]", "missing.datasets=[]", "ablation.datasets=[]"])
    set_threads(1)
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
