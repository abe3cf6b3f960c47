"""``cra``: Cascaded Residual Autoencoder (Tran et al., CVPR 2017, §3), as GCNet implements it.

Sources: Tran, Liu, Zhou, Jain, "Missing Modalities Imputation via Cascaded Residual Autoencoder",
CVPR 2017, §3 (no official code); GCNet's implementation, github.com/zeroQiaoba/GCNet, commit
8cce4a0: ``baseline-mmin/models/mmin_CRA_model.py`` L63-67 (networks), L116-146 (forward and
losses), L152-153 (clipping); ``baseline-mmin/models/networks/autoencoder.py`` L82-148
(``ResidualAE``); the IEMOCAP (four-class) command in ``run.sh`` L134 (sizes and weights).

Model: as ``ae`` (see ``mla/methods/ae.py``: utterance-level encoders, zero inputs for absent or
hidden modalities, per-modality decoders to the input features, classifier on the autoencoder's
output, the same summed reconstruction of the hidden modalities and the same simulated
missingness), with the autoencoder replaced by the residual cascade
(:class:`mla.methods.autoencoders.ResidualAE`): ``z_0 = h``, ``z_k = z_{k-1} + D_k(E_k(z_{k-1}))``
for k = 1..``n_blocks``, output ``T(z_K)`` with ``T`` GCNet's ``Linear-ReLU-Linear`` transition.
Each stage learns a residual that moves the incomplete representation towards the complete one
(Tran et al.'s progressive imputation); GCNet adds the transition and trains the cascade jointly
with the classifier, with one reconstruction loss on the final output (not one per stage).

Deviations and the grid's training settings: as for ``ae``.
"""
from __future__ import annotations

from torch import nn

from mla.methods.autoencoders import ReconstructionMethod, ResidualAE
from mla.methods.option_checks import check_count, check_layers
from mla.catalog import option_defaults
from mla.methods.base import METHODS

CATALOG = {
    "modality_counts": (2, 3),
    "reuses": "unimodal",
    "frozen_features": True,
    "options": {
        "embed_dim": {"default": 128},          # GCNet run.sh L134 --embd_size_{a,v,l}=128
        "cls_layers": {"default": [128, 128]},  # run.sh L134 --cls_layers=128,128
        "ae_layers": {"default": [256, 128]},   # run.sh L134 --AE_layers=256,128
        "n_blocks": {"default": 2},             # run.sh L134 --n_blocks=2
        "dropout": {"default": 0.5},            # run.sh L134 --dropout_rate=0.5
        "ce_weight": {"default": 1.0},          # run.sh L134
        "mse_weight": {"default": 0.8},         # run.sh L134
        "clip_norm": {"default": 5.0},          # mmin_CRA_model.py L152-153
        "train_keep": {"default": "any", "choices": ["any", "proper"]},       # ours: which present modalities a training step feeds
    },
}


@METHODS.register("cra")
class CRA(ReconstructionMethod):
    """Utterance encoders -> residual cascade -> classifier; reconstruction of the hidden modalities."""

    name = "cra"
    defaults = option_defaults(CATALOG)

    def __init__(self, encoders: nn.ModuleDict, n_classes: int, feature_dim: int, **options) -> None:
        super().__init__(encoders, n_classes, feature_dim, **options)
        n_blocks = check_count(self.name, "n_blocks", self.options["n_blocks"])
        layers = check_layers(self.name, "ae_layers", self.options["ae_layers"])
        self.autoencoder = ResidualAE(self.fused_dim, layers, n_blocks)
