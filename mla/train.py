"""The training loop shared by every method, read top to bottom in labelled phases.

seed -> data -> build -> epochs (train steps, evaluation, selection) -> write.

One process trains every seed of one job (dataset x method x variant); each seed's run is
written to its own directory only when it completes (written to a temporary sibling, then
renamed), so a failed or interrupted run never leaves a half-written result.
"""
from __future__ import annotations

import copy
import json
import math
import os
import random
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mla import catalog, config as config_mod, grid
from mla.batches import SplitTensors, audio_stats, to_tensors
from mla.evaluate import accuracies, split_metrics
from mla.io import atomic_directory, save_npz, write_json
from mla.features.store import load_split, load_vocab, read_manifest
from mla.methods.base import create_method, Method
from mla.missing import SPLITS, draw_mask
from mla.models.encoders import create_encoder
from mla.provenance import runtime_provenance, static_provenance


def set_threads(threads: int) -> int:
    """Cap PyTorch's threads at the job's threads and at the CPUs actually present."""
    n = max(1, min(threads, os.cpu_count() or 1))
    torch.set_num_threads(n)
    return n


def select_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``auto`` (cuda when available)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config device: cuda requested but no CUDA device is available")
    return torch.device(name)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch; return the generator that shuffles batches."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@dataclass
class DatasetArrays:
    """A dataset's feature arrays for all splits, loaded once per job."""

    modalities: tuple[str, ...]
    n_classes: int
    splits: dict  # split -> SplitArrays
    vocab_size: int | None


def load_dataset(dataset: str) -> DatasetArrays:
    """Load the feature store of ``dataset`` (checksums verified)."""
    feat_dir = grid.feature_dir(dataset)
    manifest = read_manifest(feat_dir)
    modalities = tuple(catalog.dataset_info(dataset).modalities)
    if tuple(manifest["modalities"]) != modalities:
        raise ValueError(f"{feat_dir}: modalities {manifest['modalities']} differ from the catalog's {modalities}")
    splits = {s: load_split(feat_dir, s) for s in SPLITS}
    vocab = len(load_vocab(feat_dir)) if "text" in modalities else None
    return DatasetArrays(modalities, len(manifest["classes"]), splits, vocab)


def split_tensors(ds: DatasetArrays, modalities: tuple[str, ...], seed: int,
                  missing: dict | None) -> tuple[dict[str, SplitTensors], dict[str, np.ndarray]]:
    """Tensors of every split, with presence masks drawn from (seed, rate, split) if missing."""
    norm = audio_stats(ds.splits["train"].arrays["audio"]) if "audio" in modalities else None
    tensors, masks = {}, {}
    for split, arr in ds.splits.items():
        present = None
        if missing is not None:
            present = draw_mask(missing["masking"], len(arr), len(modalities), missing["rate"], seed, split)
            masks[split] = present
        tensors[split] = to_tensors(arr.arrays, arr.labels, modalities, present, norm)
    return tensors, masks


def build_method(cfg: dict, job: grid.Job, ds: DatasetArrays, modalities: tuple[str, ...]) -> Method:
    """Encoders from the config's registry entries, wrapped by the job's method."""
    dim = cfg["model"]["feature_dim"]
    encoders = nn.ModuleDict()
    for m in modalities:
        spec = dict(cfg["model"]["encoders"][m])
        if m == "text":  # sizes that only the feature store knows
            spec.setdefault("vocab_size", ds.vocab_size)
            spec.setdefault("max_len", cfg["features"]["text"]["max_len"])
        encoders[m] = create_encoder(m, dim, spec)
    options = {**cfg["method_options"].get(job.method, {}), **dict(job.options)}
    return create_method(job.method, encoders, n_classes=ds.n_classes, feature_dim=dim, **options)


def build_optimizer(cfg: dict, params) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
    """SGD (or Adam) over all parameters, and the per-epoch schedule."""
    o, s = cfg["training"]["optimizer"], cfg["training"]["scheduler"]
    if o["name"] == "sgd":
        opt = torch.optim.SGD(params, lr=o["lr"], momentum=o.get("momentum", 0.0), weight_decay=o.get("weight_decay", 0.0))
    else:
        opt = torch.optim.Adam(params, lr=o["lr"], weight_decay=o.get("weight_decay", 0.0))
    sched = torch.optim.lr_scheduler.StepLR(opt, s["step_size"], s["gamma"]) if s["name"] == "step" else None
    return opt, sched


def train_run(cfg: dict, job: grid.Job, ds: DatasetArrays, seed: int) -> tuple[dict, list[dict], dict, dict]:
    """Train one seed; return (metrics, epoch log, selected state_dict, presence masks)."""
    # --- seed -------------------------------------------------------------------------
    gen = seed_everything(seed)
    device = select_device(cfg["device"])
    modalities = (job.modality,) if job.modality else ds.modalities
    missing = None
    if job.missing_rate is not None:
        missing = {"rate": job.missing_rate, "masking": cfg["missing"]["masking"]}

    # --- data -------------------------------------------------------------------------
    data, masks = split_tensors(ds, modalities, seed, missing)
    data = {s: t.to(device) for s, t in data.items()}

    # --- build ------------------------------------------------------------------------
    method = build_method(cfg, job, ds, modalities).to(device)
    optimizer, scheduler = build_optimizer(cfg, method.parameters())
    tr = cfg["training"]
    select_on = "val" if len(data["val"]) else "test"  # val_fraction 0 = the released protocol

    # --- epochs -----------------------------------------------------------------------
    log, best, best_state, best_test = [], None, None, None
    for epoch in range(1, tr["epochs"] + 1):
        method.train()
        losses = []
        for batch in method.epoch_batches(data["train"], tr["batch_size"], gen):
            loss = method.train_step(batch, optimizer)
            if not math.isfinite(loss):
                raise FloatingPointError(f"{job.id} seed {seed}: non-finite loss {loss} in epoch {epoch}")
            losses.append(loss)
        if scheduler is not None:
            scheduler.step()
        # --- eval -------------------------------------------------------------------------
        scores = {s: accuracies(method, data[s], tr["eval_batch_size"]) for s in ("val", "test") if len(data[s])}
        log.append({"epoch": epoch, "train_loss": round(float(np.mean(losses)), 6),
                    **{s: split_metrics(a)[0] for s, a in scores.items()}})
        if best is None or scores[select_on]["multi"] > best[select_on]["multi"]:
            best, best_epoch = scores, epoch
            best_state = copy.deepcopy(method.state_dict())
        if best_test is None or scores["test"]["multi"] > best_test["multi"]:
            best_test = {"epoch": epoch, "multi": scores["test"]["multi"]}

    # --- select -----------------------------------------------------------------------
    metrics = run_metrics(job, seed, method, data, masks, missing, best, device)
    metrics.update(selection=select_on, selected_epoch=best_epoch, epochs=tr["epochs"], best_on_test=best_test,
                   last_epoch=split_metrics(scores["test"])[0])
    return metrics, log, best_state, masks


def run_metrics(job: grid.Job, seed: int, method: Method, data: dict[str, SplitTensors], masks: dict,
                missing: dict | None, scores: dict, device: torch.device) -> dict:
    """The ``metrics.json`` of one run from its selected scores (see README for the fields)."""
    test, fusion = split_metrics(scores["test"])
    return {
        "job": job.id, "phase": job.phase, "dataset": job.dataset, "method": job.method, "tag": job.tag,
        "seed": seed, "modality": job.modality, "missing_rate": job.missing_rate,
        "options": dict(method.options), "modalities": list(method.modalities),
        "counts": {s: len(data[s]) for s in SPLITS},
        "test": test, "fusion": fusion,
        "val": split_metrics(scores["val"])[0] if "val" in scores else {},
        "missing": None if missing is None else {
            **missing, "realised": {s: round(float(1 - m.mean()), 4) for s, m in masks.items()}},
        "provenance": {**static_provenance(), "device": str(device), "threads": torch.get_num_threads()},
    }


def assemble_run(cfg: dict, job: grid.Job, ds: DatasetArrays, seed: int) -> tuple[dict, list[dict], dict, dict]:
    """Score a method built from other jobs' trained runs (late fusion): no training.

    Each component is that job's checkpoint for the same seed, selected on validation by its
    own run; the masks are redrawn from the same (seed, rate, split), so they are identical.
    """
    seed_everything(seed)
    device = select_device(cfg["device"])
    missing = None if job.missing_rate is None else {"rate": job.missing_rate, "masking": cfg["missing"]["masking"]}
    data, masks = split_tensors(ds, ds.modalities, seed, missing)
    data = {s: t.to(device) for s, t in data.items()}
    method = build_method(cfg, job, ds, ds.modalities)
    by_id = {j.id: j for j in grid.jobs(cfg)}
    states = {}
    for dep in job.needs:
        part = by_id[dep]
        ckpt = torch.load(f"{part.job_dir}/seed{seed}/checkpoint.pt", map_location="cpu", weights_only=True)
        states[part.modality] = ckpt["state_dict"]
    method.load_branches(states)
    method.to(device)
    bs = cfg["training"]["eval_batch_size"]
    scores = {s: accuracies(method, data[s], bs) for s in ("val", "test") if len(data[s])}
    metrics = run_metrics(job, seed, method, data, masks, missing, scores, device)
    metrics.update(selection="per component", selected_epoch=None, epochs=None, best_on_test=None,
                   last_epoch=None, components=[f"{by_id[d].job_dir}/seed{seed}" for d in job.needs])
    return metrics, [], method.state_dict(), masks


def write_run(run_dir: str, cfg: dict, metrics: dict, log: list[dict], state: dict, masks: dict,
              wall_s: float) -> None:
    """Write one run's directory atomically (a temporary sibling renamed into place)."""
    with atomic_directory(run_dir) as tmp:
        resolved = config_mod.dump(cfg)
        (tmp / "config.resolved.yaml").write_text(resolved)
        torch.save({"state_dict": state, "config": resolved, "job": metrics["job"], "seed": metrics["seed"],
                    "epoch": metrics["selected_epoch"]}, tmp / "checkpoint.pt")
        write_json(tmp / "metrics.json", metrics)
        (tmp / "log.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in log))
        if masks:
            save_npz(tmp / "missing_masks.npz", masks)
        write_json(tmp / "provenance.json", runtime_provenance(wall_s))


def run_job(cfg: dict, job_id: str) -> None:
    """Train every seed of one job of the grid."""
    job = grid.job_by_id(cfg, job_id)
    set_threads(cfg["threads"])
    ds = load_dataset(job.dataset)
    run = assemble_run if catalog.method_info(job.method).reuses else train_run
    for r in job.runs:
        start = time.perf_counter()
        metrics, log, state, masks = run(cfg, job, ds, r.seed)
        write_run(r.run_dir, cfg, metrics, log, state, masks, time.perf_counter() - start)
        print(f"{job.id} seed {r.seed}: test {metrics['test']} (epoch {metrics['selected_epoch']})", flush=True)
