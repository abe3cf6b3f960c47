"""``unimodal``: one encoder and its own linear head trained alone (the Table 1 reference).

With missing modalities its split carries its modality's column of the (seed, rate) mask drawn
for the dataset's full modality set (``mla.train.split_tensors``): it trains on the examples
that have its modality (its D_m) and is scored on the validation and test examples that have it
(``mla.evaluate.scored_rows``; the counts are in ``metrics.json`` ``scored``).
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch import nn

from mla.batches import SplitTensors, shuffled_batches
from mla.methods.base import METHODS, Method, cross_entropy

# Grid facts (no options), read without importing this file (mla/catalog.py).
CATALOG = {"per_modality": True, "modality_counts": [1, 2, 3], "reuses": None, "options": {}}


@METHODS.register("unimodal")
class Unimodal(Method):
    """Encoder + Linear(s, C) on the run's single modality; ``multi`` equals its prediction."""

    modality_counts = (1,)

    def __init__(self, encoders: nn.ModuleDict, n_classes: int, feature_dim: int, **options) -> None:
        super().__init__(encoders, n_classes, feature_dim, **options)
        self.head = nn.Linear(feature_dim, n_classes)

    def epoch_batches(self, data: SplitTensors, batch_size: int, gen: torch.Generator) -> Iterator[dict]:
        """One shuffled pass over the examples that have this modality (all, unless missing)."""
        rows = torch.nonzero(data.present[:, 0]).flatten()
        if len(rows) == 0:
            raise ValueError(f"unimodal {self.modalities[0]}: no training example has this modality under "
                             "the missing-modality mask; lower missing.rates or use more data")
        return shuffled_batches(data, batch_size, gen, rows)

    def train_step(self, batch: dict, optimizer: torch.optim.Optimizer) -> float:
        (m,) = self.modalities
        return self.optimise(cross_entropy(self.head(self.encoders[m](batch[m])), batch["label"]), optimizer)

    def predict(self, batch: dict) -> dict[str, torch.Tensor]:
        (m,) = self.modalities
        logits = self.head(self.encoders[m](batch[m]))
        return {m: logits, "multi": logits}
