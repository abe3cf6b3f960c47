"""``late_fusion``: separately trained unimodal models whose logits are averaged (Gunes & Piccardi 2005).

In the grid it reuses the ``unimodal`` runs of the same phase and seed (no retraining): the
job loads each modality's selected checkpoint into its branch (:meth:`LateFusion.load_branches`)
and only scores. ``train_step`` exists so that the method also trains on its own: every branch
is an independent unimodal model (encoder + linear head) with its own loss; their losses are
summed, which leaves the branches' gradients independent.

Per-modality predictor: the unimodal model itself ([P] §4.1.1). Fused prediction, per example:
the mean of the logits of the modalities that example has. A missing modality's branch is not
trained on that sample (its input is absent) and is left out of that example's mean. In the
grid each branch is a ``unimodal`` run trained on its modality's column of the same (seed,
rate) mask that this job scores under.

An example with no modality at all (possible only with ``missing.masking: independent``) is
still scored, so the test set keeps its size: its fused logits are the mean of every branch's
logits on its all-zero inputs (``mla.fusion.uniform_weights``), the same zero-input prediction
the jointly trained methods make for it. The per-modality keys score every example, an absent
modality's branch seeing the zeroed input.
"""
from __future__ import annotations

import torch
from torch import nn

from mla.fusion import fuse, uniform_weights
from mla.methods.base import METHODS, Method, cross_entropy
from mla.methods.unimodal import Unimodal

# Grid facts (no options), read without importing this file (mla/catalog.py).
CATALOG = {"per_modality": False, "modality_counts": [2, 3], "reuses": "unimodal", "options": {}}


@METHODS.register("late_fusion")
class LateFusion(Method):
    """One :class:`Unimodal` branch per modality; fused by the uniform mean of logits."""

    def __init__(self, encoders: nn.ModuleDict, n_classes: int, feature_dim: int, **options) -> None:
        super().__init__(encoders, n_classes, feature_dim, **options)
        self.branches = nn.ModuleDict({
            m: Unimodal(nn.ModuleDict({m: encoders[m]}), n_classes, feature_dim) for m in self.modalities
        })

    def load_branches(self, states: dict[str, dict]) -> None:
        """Load each modality's trained ``unimodal`` state dict into its branch."""
        for m, state in states.items():
            self.branches[m].load_state_dict(state)

    def train_step(self, batch: dict, optimizer: torch.optim.Optimizer) -> float:
        losses = []
        for i, m in enumerate(self.modalities):
            rows = batch["present"][:, i]
            if rows.any():
                logits = self.branches[m].head(self.encoders[m](batch[m][rows]))
                losses.append(cross_entropy(logits, batch["label"][rows]))
        return self.optimise(torch.stack(losses).sum(), optimizer)

    def predict(self, batch: dict) -> dict[str, torch.Tensor]:
        per = {m: self.branches[m].predict(batch)[m] for m in self.modalities}
        stacked = torch.stack([per[m] for m in self.modalities])
        return {**per, "multi": fuse(stacked, uniform_weights(stacked, batch["present"].T))}
