"""``bigated``: bidirectional gated fusion (Kiela et al., AAAI 2018), the paper's "BiGated".

Source: OGM-GE's ``GatedFusion`` (github.com/GeWu-Lab/OGM-GE_CVPR2022,
``models/fusion_modules.py`` L59-87, citing Kiela et al., arXiv 1802.02892; the same class is
in [C] but not wired in, reference MLA.md §3.9). It projects each modality,
``o_x = Linear(s, d)(x)``, ``o_y = Linear(s, d)(y)`` with d = s (OGM-GE: ``dim = 512``), and
with ``x_gate=True`` classifies ``fc_out(sigmoid(o_x) * o_y)``: x gates y, one direction.

Both directions, M modalities (our choice): every ordered pair (i, j), i != j, contributes
the block ``sigmoid(o_i) * o_j`` ("i gates j"); the M(M-1) blocks are concatenated in
lexicographic pair order and classified by one ``Linear(M(M-1) d, C)``::

    logits = fc_out([sigmoid(o_i) * o_j for i in 0..M-1 for j in 0..M-1 if i != j])

For M = 2: ``fc_out([sigmoid(o_x) * o_y ; sigmoid(o_y) * o_x])`` -- OGM-GE's x-gates-y block
and its mirror, combined by concatenation (a sum of the two blocks is the special case of
tied classifier weights). For three modalities all six pairwise gates are used, so each
modality gates and is gated by each other one; the projection o_m is shared between its
gating and gated roles, as in OGM-GE where ``out_x`` serves both.
Hyper-parameters: d = feature size s (OGM-GE's default, both 512); none else.

Training: joint, cross-entropy on the fused logits only ([C]'s "Normal" training).
Per-modality predictor ([P] §4.1.1): the other modalities are deactivated (encoder outputs
zeroed, so their projections reduce to the biases) and the fused network is evaluated.
Missing modalities: inputs zeroed by the batch, as in [C].
"""
from __future__ import annotations

import torch
from torch import nn

from mla.methods.base import METHODS
from mla.methods.common import FusionMethod

# Grid facts (no options), read without importing this file (mla/catalog.py).
CATALOG = {"per_modality": False, "modality_counts": [2, 3], "reuses": None, "options": {}}


@METHODS.register("bigated")
class BiGated(FusionMethod):
    """Concatenation of all pairwise gated projections, then one linear classifier."""

    def __init__(self, encoders: nn.ModuleDict, n_classes: int, feature_dim: int, **options) -> None:
        super().__init__(encoders, n_classes, feature_dim, **options)
        self.proj = nn.ModuleDict({m: nn.Linear(feature_dim, feature_dim) for m in self.modalities})
        n = len(self.modalities)
        self.pairs = [(i, j) for i in range(n) for j in range(n) if i != j]  # (gate, gated)
        self.head = nn.Linear(len(self.pairs) * feature_dim, n_classes)

    def gated_blocks(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        """The concatenated blocks ``sigmoid(o_i) * o_j`` in ``self.pairs`` order, (B, M(M-1) d)."""
        o = [self.proj[m](feats[m]) for m in self.modalities]
        return torch.cat([torch.sigmoid(o[i]) * o[j] for i, j in self.pairs], dim=1)

    def fuse(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.gated_blocks(feats))
