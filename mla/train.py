"""The training loop shared by every method, read top to bottom in labelled phases.

seed -> data -> build -> resume -> epochs (train steps, evaluation, selection, save) -> write.

One process trains every seed of one job (dataset x method x variant); each seed's run is
written to its own directory only when it completes (written to a temporary sibling, then
renamed), so a failed or interrupted run never leaves a half-written result. At the end of
every epoch the run's whole state is saved under ``work/`` (``mla/checkpoint.py``); a job
started again resumes each unfinished run from its last saved epoch, with the same result
as an uninterrupted run, and restores the runs that finished before without retraining.
"""
from __future__ import annotations

import copy
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mla import catalog, checkpoint, config as config_mod, frozen, grid
from mla.augment import augment_batch
from mla.batches import FBANK_NORMS, SplitTensors, audio_stats, to_tensors
from mla.checkpoint import JobWork, RunWork
from mla.devices import placement
from mla.evaluate import accuracies, scored_rows, split_metrics
from mla.io import atomic_directory, atomic_file, name_on_error, save_npz, writable_directory, write_json
from mla.features.store import load_split, load_vocab, read_manifest
from mla.methods.base import create_method, Method
from mla.missing import SPLITS, draw_mask, realised
from mla.models.encoders import create_encoder
from mla.models.init import initialise
from mla.provenance import process_age_s, runtime_provenance, static_provenance
from mla.safepaths import confine, remove_tree


def set_threads(threads: int) -> int:
    """Cap PyTorch's threads at the job's threads and at the CPUs actually present."""
    n = max(1, min(threads, os.cpu_count() or 1))
    torch.set_num_threads(n)
    return n


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch; return the generator that shuffles batches."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@dataclass
class DatasetArrays:
    """A dataset's feature arrays for all splits, opened once per job (rows stay in the store's
    shards and are read batch by batch, see ``mla/batches.py``)."""

    modalities: tuple[str, ...]
    n_classes: int
    splits: dict  # split -> SplitArrays
    vocab_size: int | None
    text_len: int | None = None  # token positions per text (from the store's manifest)


def load_dataset(cfg: dict, dataset: str) -> DatasetArrays:
    """Open the feature store of ``dataset`` (checksums verified; rows not read)."""
    feat_dir = grid.feature_dir(cfg, dataset)
    manifest = read_manifest(feat_dir)
    modalities = tuple(catalog.dataset_info(dataset).modalities)
    if tuple(manifest["modalities"]) != modalities:
        raise ValueError(f"{feat_dir}: modalities {manifest['modalities']} differ from the catalog's {modalities}")
    splits = {s: load_split(feat_dir, s) for s in SPLITS}
    vocab = len(load_vocab(feat_dir)) if "text" in modalities else None
    text_len = manifest["arrays"]["text"]["shape"][0] if "text" in modalities else None
    return DatasetArrays(modalities, len(manifest["classes"]), splits, vocab, text_len)


def split_tensors(ds: DatasetArrays, modalities: tuple[str, ...], seed: int, missing: dict | None,
                  inputs: dict | None = None) -> tuple[dict[str, SplitTensors], dict[str, np.ndarray]]:
    """Every split over ``modalities`` as :class:`SplitTensors` (converted batch by batch, or once
    if small); ``inputs`` (``model.inputs``, defaults :data:`mla.config.INPUTS`): pixel
    normalisation, and fbanks standardised by the training split's statistics or fed raw.

    With ``missing``, each split's presence mask is drawn from (seed, rate, split) for the
    dataset's FULL modality set, whatever ``modalities`` is: one mask per (seed, rate), so a
    per-modality run sees exactly its column of the mask the multimodal runs see. The returned
    masks are the full (n, M) ones, columns in ``ds.modalities`` order.
    """
    unknown = [m for m in modalities if m not in ds.modalities]
    if unknown:
        raise ValueError(f"modalities {unknown} are not in the dataset's {ds.modalities}")
    columns = [ds.modalities.index(m) for m in modalities]
    inputs = {**config_mod.INPUTS, **(inputs or {})}
    if inputs["fbank"] not in FBANK_NORMS:
        raise ValueError(f"fbank inputs {inputs['fbank']!r}: expected one of {', '.join(FBANK_NORMS)}")
    standardise = "audio" in modalities and inputs["fbank"] == "standardised"
    norm = audio_stats(ds.splits["train"].arrays["audio"]) if standardise else None
    tensors, masks = {}, {}
    for split, arr in ds.splits.items():
        present = None
        if missing is not None:
            masks[split] = draw_mask(missing["masking"], len(arr), len(ds.modalities), missing["rate"], seed, split)
            present = masks[split][:, columns]
        tensors[split] = to_tensors(arr.arrays, arr.labels, modalities, present, norm, inputs["pixels"])
    return tensors, masks


def job_missing(cfg: dict, job: grid.Job) -> dict | None:
    """The job's missing-modality setting (``rate``, ``masking``), or None outside the missing phase."""
    if job.missing_rate is None:
        return None
    return {"rate": job.missing_rate, "masking": cfg["missing"]["masking"]}


def job_split_tensors(cfg: dict, job: grid.Job, ds: DatasetArrays,
                      seed: int) -> tuple[dict[str, SplitTensors], dict[str, np.ndarray]]:
    """The data one run of ``job`` trains and is scored on: its modalities (the job's one modality
    for a per-modality method) under the (seed, rate) mask; every trained and assembled run reads
    its data through here."""
    modalities = (job.modality,) if job.modality else ds.modalities
    return split_tensors(ds, modalities, seed, job_missing(cfg, job), config_mod.model_for(cfg, job.dataset)["inputs"])


def build_method(cfg: dict, job: grid.Job, ds: DatasetArrays, modalities: tuple[str, ...], seed: int = 0) -> Method:
    """Encoders from the config's registry entries, wrapped by the job's method, initialised as
    ``model.init`` says from ``seed`` (callers that load a state afterwards may leave it)."""
    model = config_mod.model_for(cfg, job.dataset)
    dim = model["feature_dim"]
    if catalog.method_info(job.method).frozen_features:  # trains on fixed (n, s) features, mla/frozen.py
        encoders, pretrained = frozen.identity_encoders(modalities), []
    else:
        encoders = nn.ModuleDict()
        for m in modalities:
            spec = dict(model["encoders"][m])
            if m == "text":  # sizes that only the feature store knows
                spec.setdefault("vocab_size", ds.vocab_size)
                spec.setdefault("max_len", ds.text_len)
            encoders[m] = create_encoder(m, dim, spec)
        pretrained = [encoders[m] for m in modalities if "weights" in model["encoders"][m]]
    options = {**config_mod.method_options_for(cfg, job.method, job.dataset), **dict(job.options)}
    method = create_method(job.method, encoders, n_classes=ds.n_classes, feature_dim=dim, **options)
    initialise(method, model["init"], seed, keep=pretrained)  # pre-trained encoders keep their weights
    return method


def build_optimizer(cfg: dict, params) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
    """SGD (or Adam) over all parameters, and the per-epoch schedule (stepped after each epoch).

    ``scheduler.name``: ``none`` (constant lr); ``step`` (lr times ``gamma`` every ``step_size``
    epochs); ``cosine`` (epoch e = 1..E trains at lr * (1 + cos(pi (e-1) / E)) / 2, so the rate
    anneals within the run towards 0, which the step after the last epoch would reach).
    """
    tr = cfg["training"]
    o, s = tr["optimizer"], tr["scheduler"]
    if o["name"] == "sgd":
        opt = torch.optim.SGD(params, lr=o["lr"], momentum=o.get("momentum", 0.0), weight_decay=o.get("weight_decay", 0.0))
    else:
        opt = torch.optim.Adam(params, lr=o["lr"], weight_decay=o.get("weight_decay", 0.0))
    if s["name"] == "none":
        return opt, None
    if s["name"] == "step":
        missing = [k for k in ("step_size", "gamma") if k not in s]
        if missing:
            raise ValueError(f"training.scheduler: name step needs {' and '.join(missing)} "
                             "(e.g. {name: step, step_size: 70, gamma: 0.1})")
        return opt, torch.optim.lr_scheduler.StepLR(opt, s["step_size"], s["gamma"])
    if s["name"] == "cosine":
        extra = sorted(k for k in s if k != "name")
        if extra:  # a step_size/gamma left from a step schedule would be silently ignored
            raise ValueError(f"training.scheduler: name cosine takes no {', '.join(extra)} (anneals over training.epochs)")
        return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=tr["epochs"], eta_min=0.0)
    raise ValueError(f"training.scheduler.name {s['name']!r}: expected none, step or cosine")


@dataclass
class Selection:
    """Best-so-far bookkeeping of one run: the selected epoch (on ``select_on``'s ``multi``) with
    its scores and state, the best epoch on test, the last epoch's scores, and for every fusion
    rule ``multi:<fusion>`` the epoch selected on that rule's own ``select_on`` accuracy with its
    scores (``fusion_best``: fusion -> {epoch, val, test}; no state: the checkpoint is the
    ``multi`` one's). Saved with the run's state. Ties keep the earliest epoch."""

    select_on: str
    best: dict | None = None
    best_epoch: int | None = None
    best_state: dict | None = None
    best_test: dict | None = None
    last: dict = field(default_factory=dict)
    fusion_best: dict = field(default_factory=dict)

    def update(self, epoch: int, scores: dict, method: Method) -> None:
        """Take one epoch's ``scores`` (split -> predict key -> accuracy) of ``method``."""
        self.last = scores
        if self.best is None or scores[self.select_on]["multi"] > self.best[self.select_on]["multi"]:
            self.best, self.best_epoch = scores, epoch
            self.best_state = copy.deepcopy(method.state_dict())
        if "test" in scores and (self.best_test is None or scores["test"]["multi"] > self.best_test["multi"]):
            self.best_test = {"epoch": epoch, "multi": scores["test"]["multi"]}
        for key in sorted(k for k in scores[self.select_on] if k.startswith("multi:")):
            fusion, score = key.split(":", 1)[1], scores[self.select_on][key]
            kept = self.fusion_best.get(fusion)
            if kept is None or score > kept[self.select_on]:
                self.fusion_best[fusion] = {"epoch": epoch, **{s: scores[s][key] if s in scores else None
                                                               for s in ("val", "test")}}


def scores_test_every_epoch(job: grid.Job, select_on: str) -> bool:
    """Whether a run scores its test split after every epoch: where a table reads it (Table 1's selection
    table: the best epoch on test and the last epoch; Table 3: each fusion rule at its own selected
    epoch) and when the checkpoint is selected on test. Table 2 reads only the selected checkpoint's
    test accuracy, which :func:`train_run` scores once, from the selected state, after training."""
    return job.missing_rate is None or select_on == "test"


def train_run(cfg: dict, job: grid.Job, ds: DatasetArrays, seed: int,
              work: RunWork | None = None, seconds: dict | None = None) -> tuple[dict, list[dict], dict, dict]:
    """Train one seed; return (metrics, epoch log, selected state_dict, presence masks).

    With ``work``, the run resumes from the state saved there and saves its state after every epoch.
    ``seconds``, if given, receives where this process spent the run's time: ``setup`` (masks, frozen
    features, model), ``train`` (training steps), ``eval`` (scoring after every epoch, see
    :func:`scores_test_every_epoch`, and the selected state) and
    ``save`` (per-epoch resume state); ``provenance.json`` records it, ``bench/pipeline.py`` sums it.
    """
    clock = _Clock(seconds)
    # --- seed -------------------------------------------------------------------------
    gen = seed_everything(seed)
    place = placement(cfg)
    device = place.device
    modalities = (job.modality,) if job.modality else ds.modalities
    missing = job_missing(cfg, job)

    # --- data -------------------------------------------------------------------------
    data, masks = job_split_tensors(cfg, job, ds, seed)
    data = {s: place.data(t) for s, t in data.items()}
    fixed = catalog.method_info(job.method).frozen_features
    components = None
    if fixed:  # the unimodal runs' encoders turn every split into fixed features, once per run
        data, components = frozen.frozen_data(cfg, job, ds, seed, data)

    # --- build ------------------------------------------------------------------------
    method = place.module(build_method(cfg, job, ds, modalities, seed))
    method.score_modalities = job.missing_rate is None  # Table 2 reads the fused accuracy only
    tr = config_mod.training_for(cfg, job.method)  # frozen-feature baselines: missing.frozen_training over it
    optimizer, scheduler = build_optimizer({**cfg, "training": tr}, method.parameters())
    log, sel = [], Selection("val" if len(data["val"]) else "test")  # val_fraction 0 = the released protocol
    every_epoch = ("val", "test") if scores_test_every_epoch(job, sel.select_on) else ("val",)
    scored_splits = [s for s in every_epoch if len(data[s])]

    clock.lap("setup")

    # --- resume -----------------------------------------------------------------------
    saved = work.load_state(device) if work is not None else None
    first_epoch = 1 if saved is None else saved["epoch"] + 1
    if saved is not None:
        checkpoint.restore(saved, method, optimizer, scheduler, gen, device)
        log, sel = saved["log"], Selection(**saved["selection"])
        print(f"{job.id} seed {seed}: resumed from epoch {saved['epoch']} ({work.state_path})", flush=True)

    # --- epochs -----------------------------------------------------------------------
    every, saved_at = cfg.get("save_state_every_s", 0), time.perf_counter()
    for epoch in range(first_epoch, tr["epochs"] + 1):
        method.train()
        losses = []
        for step, batch in enumerate(method.epoch_batches(data["train"], tr["batch_size"], gen)):
            if not fixed:  # features are not frames or images: nothing to crop
                batch = augment_batch(batch, data["train"], tr.get("augment"), seed, epoch, step)  # training only
            with place.autocast():
                loss = method.train_step(batch, optimizer)
            if not math.isfinite(loss):
                raise FloatingPointError(f"{job.id} seed {seed}: non-finite loss {loss} in epoch {epoch}")
            losses.append(loss)
        if scheduler is not None:
            scheduler.step()
        clock.lap("train")
        # --- eval -------------------------------------------------------------------------
        with place.autocast():
            scores = {s: accuracies(method, data[s], tr["eval_batch_size"]) for s in scored_splits}
        # A method may report its own per-epoch diagnostics (MLA: HGM's retention and P's spectrum).
        diagnostics = getattr(method, "epoch_diagnostics", None)
        log.append({"epoch": epoch, "train_loss": round(float(np.mean(losses)), 6),
                    **{s: split_metrics(a)[0] for s, a in scores.items()},
                    **{f"{s}_fusion": split_metrics(a)[1] for s, a in scores.items() if split_metrics(a)[1]},
                    **(diagnostics() if diagnostics is not None else {})})
        sel.update(epoch, scores, method)
        clock.lap("eval")
        # --- save -------------------------------------------------------------------------
        # Every epoch's state makes a kill cost at most one epoch; with save_state_every_s > 0, only
        # once that many seconds passed (a run of seconds is cheaper to redo than to save 16 times).
        # Resuming from any saved epoch gives the same bytes, so the interval changes no result.
        if work is not None and (every == 0 or (epoch < tr["epochs"] and time.perf_counter() - saved_at >= every)):
            work.save_state(checkpoint.capture(epoch, method, optimizer, scheduler, gen, device,
                                               log=log, selection=vars(sel)))
            saved_at = time.perf_counter()
            print(f"{job.id} seed {seed} epoch {epoch}/{tr['epochs']}: {len(losses)} steps, "
                  f"train loss {log[-1]['train_loss']}, state saved", flush=True)
        clock.lap("save")

    # --- select -----------------------------------------------------------------------
    if "test" not in sel.best:  # the selected state's test accuracy, as scoring it at its epoch gave
        method.load_state_dict(sel.best_state)
        with place.autocast():
            sel.best = {**sel.best, "test": accuracies(method, data["test"], tr["eval_batch_size"])}
    metrics = run_metrics(job, seed, method, data, masks, missing, sel.best, device)
    metrics.update(selection=sel.select_on, selected_epoch=sel.best_epoch, epochs=tr["epochs"],
                   best_on_test=sel.best_test,
                   last_epoch=split_metrics(sel.last["test"])[0] if "test" in sel.last else None,
                   fusion_selection=sel.fusion_best)
    if components is not None:
        metrics["components"] = components
    clock.lap("eval")
    return metrics, log, sel.best_state, masks


class _Clock:
    """Adds the seconds since the previous lap to ``seconds[name]`` (nothing when ``seconds`` is None)."""

    def __init__(self, seconds: dict | None) -> None:
        self.seconds, self.last = seconds, time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        if self.seconds is not None:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + now - self.last, 3)
        self.last = now


def run_metrics(job: grid.Job, seed: int, method: Method, data: dict[str, SplitTensors], masks: dict,
                missing: dict | None, scores: dict, device: torch.device) -> dict:
    """The ``metrics.json`` of one run from its selected scores (see docs/methods/missing-modalities.md
    for the missing-modality and selection fields).

    ``counts``: examples per split; ``scored``: the val/test examples scored (fewer than
    ``counts`` only for a per-modality run under missing modalities: the ones that have its
    modality). ``missing.realised``: missing fraction of the full (n, M) mask per split,
    ``missing.realised_per_modality``: of each modality column. ``fusion`` holds every fusion
    rule's accuracy at the ``multi`` epoch; ``fusion_selection`` (set by the caller) each rule
    at its own selected epoch, and ``multi_fusion`` the rule ``multi`` is (None: the method has one).
    """
    test, fusion = split_metrics(scores["test"])
    fractions = None if missing is None else realised(masks, catalog.dataset_info(job.dataset).modalities)
    return {
        "job": job.id, "phase": job.phase, "dataset": job.dataset, "method": job.method, "tag": job.tag,
        "seed": seed, "modality": job.modality, "missing_rate": job.missing_rate,
        "options": dict(method.options), "modalities": list(method.modalities),
        "counts": {s: len(data[s]) for s in SPLITS},
        "scored": {s: len(scored_rows(data[s])) for s in ("val", "test") if len(data[s])},
        "test": test, "fusion": fusion, "multi_fusion": method.options.get("fusion"),
        "val": split_metrics(scores["val"])[0] if "val" in scores else {},
        "missing": None if missing is None else {
            **missing, "realised": fractions["overall"], "realised_per_modality": fractions["per_modality"]},
        "provenance": {**static_provenance(), "device": str(device), "threads": torch.get_num_threads()},
    }


def assemble_run(cfg: dict, job: grid.Job, ds: DatasetArrays, seed: int) -> tuple[dict, list[dict], dict, dict]:
    """Score a method built from other jobs' trained runs (late fusion): no training.

    Each component is that job's checkpoint for the same seed, selected on validation by its
    own run, which trained on its modality's column of the same (seed, rate) mask that is
    redrawn here; the fused prediction averages the branches of the modalities each test
    example has.
    """
    seed_everything(seed)
    place = placement(cfg)
    device = place.device
    missing = job_missing(cfg, job)
    data, masks = job_split_tensors(cfg, job, ds, seed)
    data = {s: place.data(t) for s, t in data.items()}
    method = build_method(cfg, job, ds, ds.modalities, seed)
    by_id = {j.id: j for j in grid.jobs(cfg)}
    states = {}
    for dep in job.needs:
        part = by_id[dep]
        ckpt = checkpoint.read_checkpoint(f"{part.job_dir}/seed{seed}/checkpoint.pt", part)
        states[part.modality] = ckpt["state_dict"]
    method.load_branches(states)
    method = place.module(method)
    bs = cfg["training"]["eval_batch_size"]
    with place.autocast():
        scores = {s: accuracies(method, data[s], bs) for s in ("val", "test") if len(data[s])}
    metrics = run_metrics(job, seed, method, data, masks, missing, scores, device)
    metrics.update(selection="per component", selected_epoch=None, epochs=None, best_on_test=None,
                   last_epoch=None, fusion_selection={}, components=[f"{by_id[d].job_dir}/seed{seed}" for d in job.needs])
    return metrics, [], method.state_dict(), masks


def write_run(run_dir: str | os.PathLike, cfg: dict, metrics: dict, log: list[dict], state: dict, masks: dict,
              wall_s: float, resumed_from: int | None = None,
              root: str | os.PathLike = checkpoint.RESULTS_ROOT, seconds: dict | None = None) -> None:
    """Write one run's directory atomically (a temporary sibling renamed into place); ``run_dir`` must
    lie in ``root`` (``results/``, or ``work/`` for a run kept until its job finishes)."""
    with name_on_error(run_dir), atomic_directory(run_dir, root) as tmp:
        resolved = config_mod.dump(cfg)
        (tmp / "config.resolved.yaml").write_text(resolved)
        (tmp / "checkpoint.pt").write_bytes(checkpoint.torch_bytes({
            "state_dict": state, "config": resolved, "job": metrics["job"], "seed": metrics["seed"],
            "epoch": metrics["selected_epoch"]}))
        write_json(tmp / "metrics.json", metrics)
        (tmp / "log.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in log))
        if masks:
            save_npz(tmp / "missing_masks.npz", masks)
        write_json(tmp / "provenance.json", {**runtime_provenance(wall_s), "resumed_from_epoch": resumed_from,
                                             "seconds": seconds or {}})


def run_job(cfg: dict, job_id: str) -> None:
    """Run every seed of one job of the grid: train (resuming from ``work/``) or assemble."""
    job = grid.job_by_id(cfg, job_id)
    confine(job.job_dir, checkpoint.RESULTS_ROOT)  # before anything is created: names are checked, paths too
    writable_directory(Path(job.job_dir).parent)  # fail now, not after training, if outputs cannot be written
    Path(job.marker).unlink(missing_ok=True)  # unfinished from now until every seed is in place
    assembles = catalog.method_info(job.method).assembles  # scoring only: seconds, nothing to resume
    work = None if assembles else JobWork(cfg, job)  # locks the job's work directory
    set_threads(cfg["threads"])
    started = time.perf_counter()
    ds = load_dataset(cfg, job.dataset)
    # Per job: interpreter and imports before this function, and the feature store's load.
    job_seconds = {"startup": process_age_s(), "load": round(time.perf_counter() - started, 3)}
    if work is None:
        for r in job.runs:
            start = time.perf_counter()
            metrics, log, state, masks = assemble_run(cfg, job, ds, r.seed)
            write_run(r.run_dir, cfg, metrics, log, state, masks, time.perf_counter() - start,
                      seconds={"job": job_seconds, "eval": round(time.perf_counter() - start, 3)})
            print(f"{job.id} seed {r.seed}: test {metrics['test']}", flush=True)
        mark_complete(job)
        return
    for r in job.runs:
        run = work.run(r.seed)
        if run.finished:
            print(f"{job.id} seed {r.seed}: finished before, restored from {run.run_dir}", flush=True)
        else:
            seconds = {"job": job_seconds}
            metrics, log, state, masks = train_run(cfg, job, ds, r.seed, run, seconds)
            write_run(run.run_dir, cfg, metrics, log, state, masks, run.wall_s(), run.resumed_from, root=run.root,
                      seconds=seconds)
            run.drop_state()
            print(f"{job.id} seed {r.seed}: test {metrics['test']} (epoch {metrics['selected_epoch']})", flush=True)
        checkpoint.publish(run, r.run_dir)
    mark_complete(job)
    work.finish()


def mark_complete(job: grid.Job, root: str | os.PathLike = checkpoint.RESULTS_ROOT) -> None:
    """Remove seed directories an older run of the job left (seeds it no longer has), then write
    the completion marker last: the job's directory is now whole (see ``grid.COMPLETE``)."""
    keep = {Path(r.run_dir).name for r in job.runs}
    for old in Path(job.job_dir).glob("seed*"):
        if old.name not in keep:
            remove_tree(old, root)  # confined to results/, like every delete
    with name_on_error(job.marker), atomic_file(job.marker) as tmp:
        write_json(tmp, {"job": job.id, "seeds": list(job.seeds)})
