"""Fixed (frozen) features for the missing-modality baselines of Table 2.

The paper runs its nine missing-modality baselines "with the same backbones" as Table 1 and, as
in their sources (GCNet's baselines, github zeroQiaoba/GCNet), on utterance-level features. Here a
method whose catalog entry has ``frozen_features`` (and ``reuses: unimodal``) trains on the
features that the dataset's encoders trained alone compute: for each seed, every modality's
``unimodal`` run of the same phase and rate (its checkpoint selected on validation, as
``late_fusion`` uses it) encodes every example of every split once, in eval mode without
gradients. An absent modality has no feature: its row is zero and ``present`` says so; the
method decides how an absent modality enters it and never reads that row as data.

The features depend only on the unimodal checkpoints and the split, so they are recomputed in
the job (seconds) instead of being stored: a resumed job computes the same ones.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from mla import config as config_mod, grid
from mla.batches import SplitTensors, eval_batches, to_tensors


def identity_encoders(modalities: tuple[str, ...]) -> nn.ModuleDict:
    """The encoders of a method trained on fixed features: one identity map per modality."""
    return nn.ModuleDict({m: nn.Identity() for m in modalities})


def component_paths(cfg: dict, job: grid.Job, seed: int) -> dict[str, Path]:
    """modality -> the checkpoint of the reused ``unimodal`` run (same phase, rate and ``seed``)."""
    by_id = {j.id: j for j in grid.jobs(cfg)}
    paths = {}
    for n in job.needs:
        part = by_id[n]
        paths[part.modality] = path = Path(part.job_dir) / f"seed{seed}" / "checkpoint.pt"
        if not path.is_file():
            raise FileNotFoundError(f"{job.id} seed {seed}: trains on the features of the {part.modality} unimodal "
                                    f"run, but {path} does not exist; run job {n} first (snakemake does: "
                                    f"`python -m mla train --config <config> --job {n}` by hand)")
    return paths


@torch.no_grad()
def encode_split(data: SplitTensors, encoders: dict[str, nn.Module], batch_size: int,
                 dim: int) -> dict[str, np.ndarray]:
    """Every example's (n, s) float32 features per modality; rows of absent modalities are zero
    (the encoder's response to the zeroed input is not kept)."""
    out: dict[str, list[np.ndarray]] = {m: [] for m in encoders}
    for batch in eval_batches(data, batch_size):
        for m, encoder in encoders.items():
            f = encoder(batch[m]).float()
            keep = batch["present"][:, data.modalities.index(m)].unsqueeze(1)
            out[m].append(torch.where(keep, f, torch.zeros((), dtype=f.dtype, device=f.device)).cpu().numpy())
    return {m: np.concatenate(parts) if parts else np.zeros((0, dim), np.float32) for m, parts in out.items()}


def feature_splits(data: dict[str, SplitTensors], encoders: dict[str, nn.Module],
                   batch_size: int, dim: int) -> dict[str, SplitTensors]:
    """Each split of ``data`` with its inputs replaced by the encoders' fixed features (same
    labels and presence mask; float features pass :meth:`SplitTensors.inputs` unchanged)."""
    for e in encoders.values():
        e.eval()
    out = {}
    for split, t in data.items():
        feats = encode_split(t, encoders, batch_size, dim)
        split_features = to_tensors(feats, t.labels.cpu().numpy(), t.modalities, t.present.cpu().numpy())
        out[split] = split_features.to(t.labels.device)
    return out


def frozen_data(cfg: dict, job: grid.Job, ds, seed: int,
                data: dict[str, SplitTensors]) -> tuple[dict[str, SplitTensors], list[str]]:
    """The splits a frozen-feature method of ``job`` trains on, from ``data`` (the job's split
    tensors under its (seed, rate) mask), and the unimodal run directories it used."""
    from mla.train import build_method  # deferred: mla.train imports this module

    by_id = {j.id: j for j in grid.jobs(cfg)}
    encoders = {}
    device = next(iter(data.values())).labels.device
    paths = component_paths(cfg, job, seed)
    for m, path in paths.items():
        part = next(by_id[n] for n in job.needs if by_id[n].modality == m)
        model = build_method(cfg, part, ds, (m,), seed)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["state_dict"])
        encoders[m] = model.encoders[m].to(device)
    missing = [m for m in data["train"].modalities if m not in encoders]
    if missing:
        raise ValueError(f"{job.id}: no unimodal run for modalities {missing}; the job needs one per modality")
    encoders = {m: encoders[m] for m in data["train"].modalities}
    dim = config_mod.model_for(cfg, job.dataset)["feature_dim"]
    splits = feature_splits(data, encoders, cfg["training"]["eval_batch_size"], dim)
    return splits, [str(p.parent) for p in paths.values()]
