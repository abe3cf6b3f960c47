"""``ae``: the autoencoder baseline of Table 2, as GCNet runs it (its port of MMIN's AE baseline).

Sources: GCNet (Lian et al., TPAMI 2023), github.com/zeroQiaoba/GCNet, commit 8cce4a0:
``baseline-mmin/models/mmin_AE_model.py`` L48-66 (networks), L113-143 (forward and losses),
L149-150 (gradient clipping); ``baseline-mmin/models/networks/autoencoder.py`` L268-320
(``SimpleFcAE``); the IEMOCAP (four-class) command in ``run.sh`` L128 (sizes and weights).
MMIN's own AE baseline: github.com/AIM3-RUC/MMIN, branch master, ``models/mmin_AE_model.py``.

Model (B samples, M modalities, features of size s from the frozen encoders):

- utterance-level encoder per modality ``fc_net(s, cls_layers, embed_dim)`` (GCNet ``netA``/``netV``/
  ``netL``, run on utterance-level features as here);
- ``h = concat_m enc_m(x_m)`` with an absent (or hidden) modality's input replaced by zeros
  (GCNet's ``A_miss = A * missing_index``);
- ``SimpleAE(M * embed_dim, ae_layers)`` gives ``h'``; per-modality decoders ``fc_net(M * embed_dim,
  cls_layers, s)`` map ``h'`` back to each modality's features; the classifier
  ``fc_net(M * embed_dim, cls_layers, C)`` reads ``h'``.
- Loss ``ce_weight * CE + mse_weight * sum_m sum_b hidden_bm ||dec_m(h')_b - x_bm||^2 / s``, the
  reconstruction summed (not averaged) over the batch as in GCNet.

Deviation (the protocol's): GCNet reconstructs the *masked* modalities from features its loader
still holds; here an absent modality has no feature. Each training step therefore hides part of
every sample's present modalities (``train_keep``: ``any`` = a uniformly drawn non-empty subset of
them is fed, possibly all, so some inputs are complete as in GCNet's masked training data [ours];
``proper`` = never all, as MMIN trains) and reconstructs the hidden ones; modalities the sample
lacks never enter a loss. When no training sample has two modalities (released masking at
eta >= 1 - 1/M, e.g. eta = 0.7 with three modalities) nothing can be reconstructed and the method
trains its classifier alone.

Training settings the grid owns (GCNet: Adam lr 1e-3, beta1 0.5, batch 256, 20 + 80 epochs with
linear decay, ``run.sh`` L128 and ``opts/train_opts.py`` L24-28) are not options here. Gradient
norms are clipped to ``clip_norm`` per sub-network, as GCNet does. Predictions: ``multi`` with every
present modality; modality m with m alone fed.
"""
from __future__ import annotations

from torch import nn

from mla.methods.autoencoders import ReconstructionMethod, SimpleAE
from mla.methods.option_checks import check_layers
from mla.catalog import option_defaults
from mla.methods.base import METHODS

CATALOG = {
    "modality_counts": (2, 3),
    "reuses": "unimodal",
    "frozen_features": True,
    "options": {
        "embed_dim": {"default": 128},          # GCNet run.sh L128 --embd_size_{a,v,l}=128
        "cls_layers": {"default": [128, 128]},  # run.sh L128 --cls_layers=128,128
        "ae_layers": {"default": [256, 128]},   # run.sh L128 --AE_layers=256,128
        "dropout": {"default": 0.5},            # run.sh L128 --dropout_rate=0.5
        "ce_weight": {"default": 1.0},          # run.sh L128
        "mse_weight": {"default": 0.2},         # run.sh L128
        "clip_norm": {"default": 5.0},          # mmin_AE_model.py L149-150
        "train_keep": {"default": "any", "choices": ["any", "proper"]},       # ours: which present modalities a training step feeds
    },
}


@METHODS.register("ae")
class AE(ReconstructionMethod):
    """Utterance encoders -> ``SimpleAE`` -> classifier; reconstruction of the hidden modalities."""

    name = "ae"
    defaults = option_defaults(CATALOG)

    def __init__(self, encoders: nn.ModuleDict, n_classes: int, feature_dim: int, **options) -> None:
        super().__init__(encoders, n_classes, feature_dim, **options)
        self.autoencoder = SimpleAE(self.fused_dim, check_layers(self.name, "ae_layers", self.options["ae_layers"]))
