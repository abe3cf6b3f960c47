"""``bigated``: the MLA paper's "BiLinear Gated (BiGated)" baseline, as OGM-GE's ``GatedFusion``.

Sources. The MLA paper (Zhang et al., CVPR 2024, §4.1.1) lists "BiLinear Gated (BiGated)" among
the modulation-based fusion baselines and cites Kiela, Grave, Joulin, Mikolov, "Efficient
Large-Scale Multi-Modal Classification", AAAI 2018 (arXiv 1802.02892). We could not read that
paper's fusion section (see docs/methods/baselines.md for what was searched), so we take the
definition from code: OGM-GE's ``GatedFusion`` (github.com/GeWu-Lab/OGM-GE_CVPR2022, commit
343dc1d, ``models/fusion_modules.py`` L59-87), whose docstring cites that same paper; the MLA
code (github.com/Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-Adaptation, commit
ab6c184) ships the identical class (``models/fusion_modules.py`` L70-98) but never builds it
(``models/basic_model.py`` L37-38: ``elif fusion == 'gated': pass``).

Definition (OGM-GE L65-87, ``x_gate=True`` as OGM-GE's ``AVClassifier`` builds it,
``models/basic_model.py`` L31)::

    o_x = W_x h_x + b_x,   o_y = W_y h_y + b_y          (Linear(s, d), d = s)
    logits = W_out (sigmoid(o_x) * o_y) + b_out          (Linear(d, C))

The gate is a product of two linear maps of the two modalities, one through a sigmoid: we read
"BiLinear" as this two-linear-map gate (not as "bidirectional"; an earlier version of this
file concatenated both gating directions, which no source defines). Option ``reverse``
(default False = ``x_gate=True``: the first modality gates the second) swaps the roles
(``x_gate=False``: ``sigmoid(o_y) * o_x``).

Three modalities (our generalisation, the same chain as the ``film`` method): in modality
order ``m_0 .. m_{M-1}`` (reversed with ``reverse``)::

    z_0 = o_{m_0}
    z_k = sigmoid(z_{k-1}) * o_{m_k}                     k = 1 .. M-1
    logits = W_out z_{M-1} + b_out

For M = 2 this is exactly OGM-GE's module; for M = 3 the first modality gates the second and
the gated result gates the third. Hyper-parameters: d = s (OGM-GE: ``dim = input_dim = 512``).

Training: joint, cross-entropy on the fused logits only. Per-modality predictor (the MLA paper,
§4.1.1): the other modalities are deactivated (encoder outputs zeroed, so their projections
reduce to their biases) and the fused network is evaluated. Missing modalities: inputs zeroed
by the batch.
"""
from __future__ import annotations

import torch
from torch import nn

from mla.catalog import option_defaults
from mla.methods.base import METHODS
from mla.methods.common import FusionMethod

# Grid facts (no options), read without importing this file (mla/catalog.py).
CATALOG = {"per_modality": False, "modality_counts": [2, 3], "reuses": None,
           "options": {"reverse": {"default": False}}}  # OGM-GE GatedFusion(x_gate=True): the first modality gates


@METHODS.register("bigated")
class BiGated(FusionMethod):
    """OGM-GE's GatedFusion: ``fc_out(sigmoid(o_x) * o_y)``, chained over three modalities."""

    defaults = option_defaults(CATALOG)

    def __init__(self, encoders: nn.ModuleDict, n_classes: int, feature_dim: int, **options) -> None:
        super().__init__(encoders, n_classes, feature_dim, **options)
        if not isinstance(self.options["reverse"], bool):
            raise ValueError(f"method bigated: option reverse must be true or false, got {self.options['reverse']!r}")
        self.order = self.modalities[::-1] if self.options["reverse"] else self.modalities
        self.proj = nn.ModuleDict({m: nn.Linear(feature_dim, feature_dim) for m in self.modalities})
        self.head = nn.Linear(feature_dim, n_classes)

    def gated(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        """The gated representation ``z_{M-1}`` fed to the classifier, (B, s)."""
        z = self.proj[self.order[0]](feats[self.order[0]])
        for m in self.order[1:]:
            z = torch.sigmoid(z) * self.proj[m](feats[m])
        return z

    def fuse(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.gated(feats))
