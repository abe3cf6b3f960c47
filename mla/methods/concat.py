"""``concat``: joint training of all encoders with concatenation fusion and one linear head.

Per-modality accuracy as the paper defines it for Concat ([P] §4.1.1): the head is split
into per-modality sub-heads, modality m's slice of the weight applied to its features, plus
bias / M (as the released code does for its unimodal evaluation).
"""
from __future__ import annotations

import torch
from torch import nn

from mla.methods.base import METHODS, Method, cross_entropy

# Grid facts (no options), read without importing this file (mla/catalog.py).
CATALOG = {"per_modality": False, "modality_counts": [2, 3], "reuses": None, "options": {}}


def subhead_logits(head: nn.Linear, feats: torch.Tensor, m: int, n_modalities: int) -> torch.Tensor:
    """Modality ``m``'s sub-head: ``feats @ W[:, m*s:(m+1)*s].T + b / M``."""
    s = feats.shape[1]
    return feats @ head.weight[:, m * s : (m + 1) * s].T + head.bias / n_modalities


@METHODS.register("concat")
class Concat(Method):
    """Linear(M*s, C) on the concatenated features; loss on the fused output only."""

    def __init__(self, encoders: nn.ModuleDict, n_classes: int, feature_dim: int, **options) -> None:
        super().__init__(encoders, n_classes, feature_dim, **options)
        self.head = nn.Linear(len(self.modalities) * feature_dim, n_classes)

    def _features(self, batch: dict) -> list[torch.Tensor]:
        return [self.encoders[m](batch[m]) for m in self.modalities]

    def train_step(self, batch: dict, optimizer: torch.optim.Optimizer) -> float:
        logits = self.head(torch.cat(self._features(batch), dim=1))
        return self.optimise(cross_entropy(logits, batch["label"]), optimizer)

    def predict(self, batch: dict) -> dict[str, torch.Tensor]:
        feats = self._features(batch)
        out = {"multi": self.head(torch.cat(feats, dim=1))}
        for i, m in enumerate(self.modalities):
            out[m] = subhead_logits(self.head, feats[i], i, len(self.modalities))
        return out
