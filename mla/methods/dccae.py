"""``dccae``: deep canonically correlated autoencoders + a linear SVM (Wang et al., ICML 2015), Table 2's DCCAE row.

Wang et al. 2015, the DCCAE objective: DCCA's correlation of the encoders' outputs plus, per view, the
reconstruction error of a decoder from its encoder's output, weighted by λ:
``min -corr(f(X), g(Y)) + λ/N Σ (||x - p(f(x))||² + ||y - q(g(y))||²)``. As GCNet runs it
(github zeroQiaoba/GCNet at 8cce4a0, ``baseline-cca/dccae.py``): everything of ``dcca`` (encoder
MLPs, pairwise loss, SVM), plus per modality a decoder MLP with the encoder's sizes reversed
(L128-135), the reconstruction error ``F.mse_loss`` (mean over elements, L48-50) and
``λ = 0.001`` on the sum over modalities (L294).

Missing modalities: as ``dcca`` for the correlation and the SVM; a modality's reconstruction term
averages over the rows that have it (an absent row has nothing to reconstruct), so batches without
any modality pair still train the autoencoders. Deviations: as ``dcca`` (optimizer and schedule of
the pipeline; GCNet decodes the third modality with the second decoder, ``r3 = self.decoder2(z3)``
at L145, which we do not reproduce); GCNet reconstructs mean-filled inputs too, we do not.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mla.catalog import option_defaults
from mla.methods.base import METHODS
from mla.methods.cca_parts import mlp
from mla.methods.dcca import DCCA
from mla.methods.option_checks import check_positive

CATALOG = {
    "modality_counts": (2, 3),
    "reuses": "unimodal",
    "frozen_features": True,
    "options": {
        "n_components": {"default": 10},
        "hidden": {"default": 1024},
        "layers": {"default": 3},
        "r1": {"default": 1.0e-3},
        "r2": {"default": 1.0e-3},
        "eps": {"default": 1.0e-9},
        "svm_c": {"default": 0.01},
        "recon_weight": {"default": 1.0e-3},
    },
}


def reconstruction_loss(recon: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> torch.Tensor:
    """Σ over modalities of the mean squared error between reconstruction and input (GCNet L48-50, L294)."""
    return torch.stack([F.mse_loss(recon[m], target[m]) for m in recon]).sum()


@METHODS.register("dccae")
class DCCAE(DCCA):
    """DCCA with one decoder per modality and its weighted reconstruction error."""

    name = "dccae"
    defaults = option_defaults(CATALOG)
    modality_counts = CATALOG["modality_counts"]

    def __init__(self, encoders: nn.ModuleDict, n_classes: int, feature_dim: int, **options) -> None:
        super().__init__(encoders, n_classes, feature_dim, **options)
        check_positive("dccae", "recon_weight", self.options["recon_weight"], zero_ok=True)
        self.decoders = nn.ModuleDict({m: mlp(self.sizes[::-1]) for m in self.modalities})

    def extra_loss(self, batch: dict, outs: dict) -> torch.Tensor | None:
        """``recon_weight`` × the reconstruction error of every modality over its present rows."""
        if not outs:
            return None
        recon = {self.modalities[i]: self.decoders[self.modalities[i]](z) for i, (z, _) in outs.items()}
        target = {self.modalities[i]: self.encoders[self.modalities[i]](batch[self.modalities[i]][rows])
                  for i, (_, rows) in outs.items()}
        return self.options["recon_weight"] * reconstruction_loss(recon, target)
