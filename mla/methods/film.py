"""``film``: FiLM fusion (Perez et al., AAAI 2018) as in OGM-GE's fusion module, chained over M.

Source: OGM-GE's ``FiLM`` (github.com/GeWu-Lab/OGM-GE_CVPR2022, ``models/fusion_modules.py``
L27-56). The MLA authors' code (github.com/Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-Adaptation,
commit ab6c184) ships the same class (``models/fusion_modules.py`` L38-69) but never builds it
(``models/basic_model.py`` L35-36: ``elif fusion == 'film': pass``). docs/methods/baselines.md has
the equations. With ``x_film=True`` (OGM-GE ``models/basic_model.py`` L29), the first modality
x produces ``(gamma, beta) = split(Linear(s, 2s)(x))`` and the output is
``fc_out(gamma * y + beta)`` with ``fc_out = Linear(s, C)``. The FiLM width equals the
feature size s, since gamma multiplies y element-wise (OGM-GE: ``dim = input_dim = 512``).

Generalisation to M modalities (our choice), a conditioning chain in modality order
``m_0, m_1, ..., m_{M-1}``::

    z_0 = h_{m_0}
    gamma_k, beta_k = split(F_k(z_{k-1}))        F_k = Linear(s, 2s), k = 1..M-1
    z_k = gamma_k * h_{m_k} + beta_k
    logits = fc_out(z_{M-1})

For M = 2 this is exactly OGM-GE's FiLM (first modality conditions the second); for three
modalities (audio, image, text) audio modulates image and the result modulates text, so
every modality enters the output and each FiLM layer is conditioned on everything before it.
Option ``reverse`` (default False = OGM-GE's ``x_film=True``) runs the chain in reverse
modality order (for M = 2: ``x_film=False``).

Training: joint, cross-entropy on the fused logits only (the "Normal" training of the MLA code's
``main.py``). Per-modality predictor (the MLA paper, Zhang et al., CVPR 2024, §4.1.1): the other modalities are deactivated (encoder outputs
zeroed) and the whole chain is evaluated; e.g. for M = 2, audio alone gives
``fc_out(beta(h_a))`` and video alone ``fc_out(gamma(0) * h_v + beta(0))``.
Missing modalities: inputs zeroed by the batch, as in the MLA code.
"""
from __future__ import annotations

import torch
from torch import nn

from mla.methods.base import METHODS
from mla.methods.common import FusionMethod
from mla.catalog import option_defaults

# Grid facts and options, read without importing this file (mla/catalog.py); `defaults` below come from it.
CATALOG = {
    "per_modality": False,
    "modality_counts": [2, 3],
    "reuses": None,
    "options": {"reverse": {"default": False}},
}


@METHODS.register("film")
class FiLM(FusionMethod):
    """Chain of FiLM layers: each modality is modulated by the chain state so far."""

    defaults = option_defaults(CATALOG)

    def __init__(self, encoders: nn.ModuleDict, n_classes: int, feature_dim: int, **options) -> None:
        super().__init__(encoders, n_classes, feature_dim, **options)
        if not isinstance(self.options["reverse"], bool):
            raise ValueError(f"method film: option reverse must be true or false, got {self.options['reverse']!r}")
        self.order = self.modalities[::-1] if self.options["reverse"] else self.modalities
        self.film = nn.ModuleList(nn.Linear(feature_dim, 2 * feature_dim) for _ in self.order[1:])
        self.head = nn.Linear(feature_dim, n_classes)

    def fuse(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        z = feats[self.order[0]]
        for layer, m in zip(self.film, self.order[1:]):
            gamma, beta = layer(z).split(self.feature_dim, dim=1)
            z = gamma * feats[m] + beta
        return self.head(z)
