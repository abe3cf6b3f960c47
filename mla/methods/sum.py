"""``sum``: OGM-GE's SumFusion, one linear layer per modality, outputs added.

Source: OGM-GE (Peng et al., CVPR 2022), ``models/fusion_modules.py`` L5-13 of
github.com/GeWu-Lab/OGM-GE_CVPR2022 (commit 343dc1d): ``fc_x(x) + fc_y(y)`` with
``fc_* = Linear(512, C)``; the MLA code [C] carries the same module (``models/fusion_modules.py``).

Formulation, M modalities: ``logits = sum_m (W_m h_m + b_m)``, one ``Linear(s, C)`` per
modality; trained jointly with cross-entropy on the summed logits (no unimodal losses).
Hyper-parameters: none (the layer sizes follow the encoders' feature size s).

Per-modality predictor ([P] §4.1.1: "following OGM-GE, the evaluated modality's features go
into the shared head"): OGM-GE's evaluation (``main.py`` L194-198 of OGM-GE; [C] ``main.py``
L595-614 does the same) feeds modality m's features to *its own* linear layer with **half
its bias**, ``W_m h_m + b_m / 2``. We generalise the 1/2 to 1/M: ``W_m h_m + b_m / M``
(for M = 2 identical to OGM-GE). This is not the deactivation rule: deactivating the other
modalities (zeroing their features) would instead give ``W_m h_m + sum_k b_k``.
Missing modalities: inputs zeroed by the batch, as in [C] (see ``mla.methods.common``).
"""
from __future__ import annotations

import torch
from torch import nn

from mla.methods.base import METHODS
from mla.methods.common import FusionMethod

# Grid facts (no options), read without importing this file (mla/catalog.py).
CATALOG = {"per_modality": False, "modality_counts": [2, 3], "reuses": None, "options": {}}


@METHODS.register("sum")
class Sum(FusionMethod):
    """Sum of per-modality linear layers; per-modality rows use W_m h_m + b_m / M."""

    def __init__(self, encoders: nn.ModuleDict, n_classes: int, feature_dim: int, **options) -> None:
        super().__init__(encoders, n_classes, feature_dim, **options)
        self.heads = nn.ModuleDict({m: nn.Linear(feature_dim, n_classes) for m in self.modalities})

    def fuse(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack([self.heads[m](feats[m]) for m in self.modalities]).sum(0)

    def unimodal_logits(self, feats: dict[str, torch.Tensor], m: str) -> torch.Tensor:
        head = self.heads[m]
        return feats[m] @ head.weight.T + head.bias / len(self.modalities)
