"""Measure the built-in benchmark's three calibration criteria: laziness, convergence, stability.

Trains, in this one process, the config's Table 1 jobs (phase ``train``) of the chosen datasets,
methods and seeds with :func:`mla.train.train_run`, then prints one row per (dataset, cell) with
PASS/FAIL per criterion, and the settings it ran. The criteria (docs/benchmark.md, Calibration):

* **lazy** (per dataset): some modality m is lazy under joint training, i.e. the mean test accuracy
  of ``unimodal-m`` minus the mean of concat's accuracy on m alone is >= 5 points AND larger than
  2 pooled standard deviations, sqrt((s_alone^2 + s_joint^2) / 2) over seeds;
* **converged** (per cell): over the last quarter of the epochs (the last ceil(E/4) epochs), the
  seed-mean validation ``multi`` accuracy moves by at most 1.5 points (max - min over those
  epochs). Late fusion trains nothing itself: it is judged by its unimodal branches (largest range);
* **stable**: each cell's seed standard deviation (ddof 1) of the selected test ``multi`` accuracy is
  at most 5 points, and the median over all cells printed is at most 2; the smallest difference
  the seeds can call significant at that median, t_{0.975,2n-2} * sigma * sqrt(2/n), must be <= 3.

Finished runs are kept in a JSON-lines cache keyed by everything that determines them (the
feature store's manifest, the resolved config minus bookkeeping keys, the job and the seed), so
a later call with more methods or seeds only trains what is new (the selected states of the
per-modality runs, which late fusion assembles, are kept in ``<cache>.states/``):

    uv run python bench/calibration_criteria.py --datasets builtin_av --methods unimodal concat \\
        --seeds 0 1 2 [--set training.epochs=12 ...] [--cache work/calibration/runs.jsonl]

``--from-results`` reads the runs of a finished pipeline (``snakemake --cores 8 all``) instead of training;
``--write`` also saves the criteria to ``bench/results/calibration.json``, from which ``python -m mla
readme`` generates the README's calibration block.

Needs the datasets' feature stores (``snakemake --cores 2 phase_data``). Calibrate on the
joint-vs-alone and convergence results only, never on MLA's results.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from mla import catalog, config, grid
from mla.evaluate import accuracies, split_metrics
from mla.report import readme
from mla.report.readme import pass_fail
from mla.report.verdicts import smallest_significant
from mla.train import build_method, job_split_tensors, load_dataset, set_threads, train_run

LAZY_GAP = 5.0          # points: alone - joint at least this ...
LAZY_SIGMAS = 2.0       # ... and beyond this many pooled standard deviations
CONVERGED_RANGE = 1.5   # points: max - min of the seed-mean val multi over the last quarter
STABLE_MEDIAN = 2.0     # points: median seed std over the cells
STABLE_MAX = 5.0        # points: no cell's seed std above this
SIGNIFICANT_MAX = 3.0   # points: smallest significant difference at the median std


def last_quarter(n_epochs: int) -> int:
    """How many final epochs make up the last quarter of a run of ``n_epochs`` (at least 1)."""
    return max(1, math.ceil(n_epochs / 4))


def convergence_range(curves: list[list[float]]) -> float:
    """max - min of the seed-mean curve over its last quarter; ``curves``: one per seed, equal lengths."""
    lengths = {len(c) for c in curves}
    if len(lengths) != 1 or not curves[0]:
        raise ValueError(f"validation curves of unequal or zero length {sorted(lengths)}: runs of different epochs")
    mean = np.mean(np.asarray(curves, dtype=float), axis=0)
    tail = mean[-last_quarter(len(mean)):]
    return float(tail.max() - tail.min())


def seed_std(values: list[float]) -> float:
    """Sample standard deviation (ddof 1) over seeds; needs at least two seeds."""
    if len(values) < 2:
        raise ValueError("a standard deviation over seeds needs at least 2 seeds (--seeds)")
    return float(np.std(values, ddof=1))


def laziness(alone: list[float], joint: list[float]) -> tuple[float, float, bool]:
    """(gap = mean alone - mean joint, pooled std, lazy?) for one modality."""
    gap = float(np.mean(alone) - np.mean(joint))
    pooled = math.sqrt((seed_std(alone) ** 2 + seed_std(joint) ** 2) / 2)
    return gap, pooled, gap >= LAZY_GAP and gap > LAZY_SIGMAS * pooled


def run_key(cfg: dict, job: grid.Job, seed: int) -> str:
    """A digest of everything that determines one run's result (seed included)."""
    manifest = (Path(grid.feature_dir(cfg, job.dataset)) / "manifest.json").read_bytes()
    settings = {k: cfg[k] for k in ("split_seed", "val_fraction", "threads", "precision", "model", "training",
                                    "method_options", "missing")}
    blob = json.dumps([hashlib.sha256(manifest).hexdigest(), settings, job.id, list(job.options), seed],
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_cache(path: Path) -> dict[str, dict]:
    """The cached run records by key (empty if the file does not exist yet)."""
    if not path.exists():
        return {}
    records = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {r["key"]: r for r in records}


def trained_record(cfg: dict, job: grid.Job, ds, seed: int) -> tuple[dict, dict]:
    """Train one run; return its cache record and its selected state."""
    start = time.perf_counter()
    metrics, log, state, _ = train_run(cfg, job, ds, seed)
    record = {"tag": job.tag, "dataset": job.dataset, "seed": seed, "test": metrics["test"],
              "val_curve": [row["val"]["multi"] for row in log], "selected_epoch": metrics["selected_epoch"],
              "wall_s": round(time.perf_counter() - start, 2)}
    return record, state


def late_fusion_record(cfg: dict, job: grid.Job, ds, seed: int, states: dict[str, dict]) -> dict:
    """Score late fusion from its branches' selected states, as ``mla.train.assemble_run`` does
    from their checkpoints on disk."""
    data, _ = job_split_tensors(cfg, job, ds, seed)
    method = build_method(cfg, job, ds, ds.modalities, seed)
    method.load_branches(states)
    test = split_metrics(accuracies(method, data["test"], cfg["training"]["eval_batch_size"]))[0]
    return {"tag": job.tag, "dataset": job.dataset, "seed": seed, "test": test, "val_curve": None,
            "selected_epoch": None, "wall_s": 0.0}


def collect(cfg: dict, datasets: list[str], methods: list[str], seeds: list[int], cache_path: Path) -> list[dict]:
    """Every requested run's record, trained now or read from the cache (new ones appended to it)."""
    cache = load_cache(cache_path)
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    states_dir = cache_path.with_name(cache_path.name + ".states")
    out = []
    with cache_path.open("a") as sink:
        for d in datasets:
            ds = load_dataset(cfg, d)
            jobs = [j for j in grid.jobs(cfg) if j.phase == "train" and j.dataset == d and j.method in methods]
            by_id = {j.id: j for j in grid.jobs(cfg)}
            for job in jobs:
                for seed in seeds:
                    key = run_key(cfg, job, seed)
                    if key not in cache:
                        if catalog.method_info(job.method).reuses:
                            states = {}
                            for dep in job.needs:  # the branches' selected states, kept beside the cache
                                part = by_id[dep]
                                kept = states_dir / f"{run_key(cfg, part, seed)}.pt"
                                states[part.modality] = (torch.load(kept, weights_only=True) if kept.exists()
                                                         else trained_record(cfg, part, ds, seed)[1])
                            record = late_fusion_record(cfg, job, ds, seed, states)
                        else:
                            record, state = trained_record(cfg, job, ds, seed)
                            if job.modality:  # a branch late fusion may assemble later
                                states_dir.mkdir(parents=True, exist_ok=True)
                                torch.save(state, states_dir / f"{key}.pt")
                        cache[key] = {"key": key, **record}
                        sink.write(json.dumps(cache[key], sort_keys=True) + "\n")
                        sink.flush()
                        print(f"  {d} {job.tag} seed {seed}: test {record['test']} epoch {record['selected_epoch']}"
                              f" ({record['wall_s']} s)", flush=True)
                    out.append({**cache[key], "method": job.method, "modality": job.modality})
    return out


def pipeline_records(cfg: dict, datasets: list[str], methods: list[str], seeds: list[int]) -> list[dict]:
    """The same records read from a finished pipeline's Table 1 runs (``results/<name>/train/``) instead of
    training: the criteria of exactly the runs the report shows."""
    out = []
    for job in grid.jobs(cfg):
        if job.phase != "train" or job.dataset not in datasets or job.method not in methods:
            continue
        for seed in seeds:
            run = Path(job.job_dir) / f"seed{seed}"
            if not (run / "metrics.json").is_file():
                raise SystemExit(f"{run}: no finished run (run the pipeline first, or leave out --from-results)")
            metrics = json.loads((run / "metrics.json").read_text())
            log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line]
            out.append({"tag": job.tag, "dataset": job.dataset, "seed": seed, "test": metrics["test"],
                        "val_curve": [row["val"]["multi"] for row in log] or None,
                        "selected_epoch": metrics["selected_epoch"],
                        "wall_s": json.loads((run / "provenance.json").read_text())["wall_s"],
                        "method": job.method, "modality": job.modality})
    return out


def summarise(records: list[dict]) -> dict:
    """The three criteria over ``records`` (one per run): per cell its mean, seed std and convergence
    range with PASS/FAIL, per dataset its modalities' laziness, the stability summary, and ``pass``."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["dataset"], r["tag"]), []).append(r)
    cells = []
    for (d, tag), rs in groups.items():
        acc = [r["test"]["multi"] for r in rs]
        if rs[0]["val_curve"] is None:  # late fusion: its branches' ranges
            branches = [t for (dd, t) in groups if dd == d and t.startswith("unimodal-")]
            rng = max((convergence_range([r["val_curve"] for r in groups[(d, t)]]) for t in branches), default=None)
        else:
            rng = convergence_range([r["val_curve"] for r in rs])
        sel = [r["selected_epoch"] for r in rs if r["selected_epoch"] is not None]
        sd = seed_std(acc)
        cells.append({"dataset": d, "cell": tag, "mean": float(np.mean(acc)), "std": sd,
                      "range": rng, "converged": None if rng is None else rng <= CONVERGED_RANGE,
                      "stable": sd <= STABLE_MAX, "selected_epoch": statistics.median(sel) if sel else None,
                      "s_per_run": float(np.mean([r["wall_s"] for r in rs]))})
    lazy = {}
    for d in dict.fromkeys(d for d, _ in groups):
        if (d, "concat") not in groups:
            lazy[d] = {"modalities": [], "pass": False, "missing": "concat"}
            continue
        rows = []
        for m in catalog.dataset_info(d).modalities:
            if (d, f"unimodal-{m}") not in groups:
                rows.append({"modality": m, "missing": f"unimodal-{m}"})
                continue
            alone = [r["test"]["multi"] for r in groups[(d, f"unimodal-{m}")]]
            joint = [r["test"][m] for r in groups[(d, "concat")]]
            gap, pooled, is_lazy = laziness(alone, joint)
            rows.append({"modality": m, "alone_mean": float(np.mean(alone)), "alone_std": seed_std(alone),
                         "joint_mean": float(np.mean(joint)), "joint_std": seed_std(joint), "gap": gap,
                         "two_pooled_sd": 2 * pooled, "lazy": is_lazy})
        lazy[d] = {"modalities": rows, "pass": any(r.get("lazy") for r in rows)}
    stds = [c["std"] for c in cells]
    n = min(len(rs) for rs in groups.values())
    median = statistics.median(stds)
    worst = max(cells, key=lambda c: c["std"])
    stability = {"cells": len(cells), "seeds": n, "median_std": median, "max_std": worst["std"],
                 "max_std_cell": f"{worst['dataset']} {worst['cell']}",
                 "smallest_significant": smallest_significant(median, n)}
    stability["pass"] = (median <= STABLE_MEDIAN and worst["std"] <= STABLE_MAX
                         and stability["smallest_significant"] <= SIGNIFICANT_MAX)
    ok = (all(c["converged"] is not False and c["stable"] for c in cells) and all(v["pass"] for v in lazy.values())
          and stability["pass"])
    return {"cells": cells, "lazy": lazy, "stability": stability, "pass": ok}


def print_summary(summary: dict) -> None:
    """Print :func:`summarise`'s result: one row per cell, the laziness, the stability line."""
    print(f"\n{'dataset':12s} {'cell':20s} {'test multi':>15s} {'std':>5s} {'stable':>6s} {'range':>5s} {'conv':>4s}"
          f" {'sel.ep':>6s} {'s/run':>6s}")
    for c in summary["cells"]:
        rng = "-" if c["range"] is None else f"{c['range']:5.2f}"
        conv = "n/a" if c["converged"] is None else pass_fail(c["converged"])
        sel = "-" if c["selected_epoch"] is None else c["selected_epoch"]
        print(f"{c['dataset']:12s} {c['cell']:20s} {c['mean']:7.2f} +- {c['std']:5.2f} {'':5s} "
              f"{pass_fail(c['stable']):>6s} {rng:>5s} {conv:>4s} {sel:>6} {c['s_per_run']:6.1f}")
    print("\nlaziness (test accuracy of a modality: trained alone vs read from concat's encoder)")
    for d, v in summary["lazy"].items():
        if v.get("missing"):
            print(f"{d:12s} concat not run: laziness not measured")
            continue
        for r in v["modalities"]:
            if r.get("missing"):
                print(f"{d:12s} {r['modality']:6s} {r['missing']} not run")
                continue
            print(f"{d:12s} {r['modality']:6s} alone {r['alone_mean']:6.2f} +- {r['alone_std']:5.2f}  concat "
                  f"{r['joint_mean']:6.2f} +- {r['joint_std']:5.2f}  gap {r['gap']:6.2f} (2 pooled sd "
                  f"{r['two_pooled_sd']:5.2f})  {'lazy' if r['lazy'] else 'not lazy'}")
        print(f"{d:12s} lazy: {pass_fail(v['pass'])}")
    s = summary["stability"]
    print(f"\nstability over {s['cells']} cells, {s['seeds']} seeds: median seed std {s['median_std']:.2f} "
          f"({pass_fail(s['median_std'] <= STABLE_MEDIAN)} <= {STABLE_MEDIAN}), max {s['max_std']:.2f} "
          f"({pass_fail(s['max_std'] <= STABLE_MAX)} <= {STABLE_MAX}); smallest significant difference at "
          f"the median: {s['smallest_significant']:.2f} points "
          f"({pass_fail(s['smallest_significant'] <= SIGNIFICANT_MAX)} <= {SIGNIFICANT_MAX})")
    print(f"all criteria: {pass_fail(summary['pass'])}")


def settings(cfg: dict, datasets: list[str], seeds: list[int]) -> str:
    """The settings that determine the runs, one line each."""
    tr, model = cfg["training"], cfg["model"]
    lines = [f"seeds {seeds}; epochs {tr['epochs']}, batch {tr['batch_size']}, optimizer {tr['optimizer']}, "
             f"scheduler {tr['scheduler']}",
             f"model: feature_dim {model['feature_dim']}, encoders {model['encoders']}, init {model['init']}"]
    lines += [f"{d}: {cfg['data'][d]}" for d in datasets if d in cfg.get("data", {})]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--datasets", nargs="+", default=None, help="default: the config's datasets")
    ap.add_argument("--methods", nargs="+", default=None, help="default: the config's methods")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the config's seeds")
    ap.add_argument("--set", action="append", default=[], help="config override key=value (repeatable)")
    ap.add_argument("--cache", type=Path, default=Path("work/calibration/runs.jsonl"), help="run records (git-ignored)")
    ap.add_argument("--from-results", action="store_true",
                    help="read the finished pipeline's runs (results/<name>/train/) instead of training")
    ap.add_argument("--write", type=Path, nargs="?", const=Path(readme.CALIBRATION_JSON), default=None,
                    help=f"also write the criteria as JSON (default path {readme.CALIBRATION_JSON}, from which "
                         "`python -m mla readme` generates the README's calibration block)")
    args = ap.parse_args()
    cfg = config.load(args.config, args.set)
    datasets = args.datasets or cfg["datasets"]
    methods = args.methods or cfg["methods"]
    seeds = args.seeds or cfg["seeds"]
    cfg = config.load(args.config, args.set + [f"seeds={seeds}", f"methods={methods}", f"datasets={datasets}",
                                               "analysis.datasets=[]", "missing.datasets=[]", "ablation.datasets=[]"])
    set_threads(cfg["threads"])
    print(settings(cfg, datasets, seeds), flush=True)
    records = (pipeline_records(cfg, datasets, methods, seeds) if args.from_results
               else collect(cfg, datasets, methods, seeds, args.cache))
    if not args.from_results:  # training printed its progress since: repeat what was measured
        print("\n" + settings(cfg, datasets, seeds))
    summary = summarise(records)
    print_summary(summary)
    if args.write:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        meta = {"commit": commit, "name": cfg["name"], "from_results": args.from_results, "seeds": seeds,
                "epochs": cfg["training"]["epochs"], "last_quarter": last_quarter(cfg["training"]["epochs"]),
                "thresholds": {"lazy_gap": LAZY_GAP, "lazy_sigmas": LAZY_SIGMAS, "converged_range": CONVERGED_RANGE,
                               "stable_median": STABLE_MEDIAN, "stable_max": STABLE_MAX,
                               "significant_max": SIGNIFICANT_MAX}}
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(json.dumps({**meta, **summary}, indent=1) + "\n")
        print(f"wrote {args.write}")


if __name__ == "__main__":
    main()
