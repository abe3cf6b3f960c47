"""Calibrate the built-in benchmark on joint-vs-alone results (never on MLA's).

Trains, in one process, the ``unimodal`` and ``concat`` jobs of one dataset for several
seeds and prints each modality's accuracy alone vs under concat (laziness = alone - concat).
The generator parameters are chosen on this output only.

    uv run python bench/calibrate.py --dataset builtin_av --seeds 0 1 2 [--set key=value ...]

Needs the dataset's feature store (``snakemake --cores 2 phase_data``).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from mla import config, grid
from mla.train import load_dataset, set_threads, train_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=["unimodal", "concat"])
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()
    cfg = config.load(args.config, args.set + [f"seeds={args.seeds}"])
    set_threads(cfg["threads"])
    ds = load_dataset(cfg, args.dataset)
    acc: dict[tuple[str, str], list[float]] = {}
    for job in grid.jobs(cfg):
        if job.phase != "train" or job.dataset != args.dataset or job.method not in args.methods:
            continue
        for seed in args.seeds:
            start = time.perf_counter()
            metrics, *_ = train_run(cfg, job, ds, seed)
            for key, value in metrics["test"].items():
                acc.setdefault((job.tag, key), []).append(value)
            print(f"{job.tag:18s} seed {seed}: {metrics['test']} epoch {metrics['selected_epoch']} "
                  f"({time.perf_counter() - start:.1f} s)", flush=True)
    print("\nmean +- std over seeds")
    for (tag, key), values in sorted(acc.items()):
        print(f"{tag:18s} {key:6s} {np.mean(values):6.2f} +- {np.std(values, ddof=1) if len(values) > 1 else 0:5.2f}")


if __name__ == "__main__":
    main()
