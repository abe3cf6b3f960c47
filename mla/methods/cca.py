"""``cca``: classical canonical correlation analysis + a linear SVM (Hotelling 1936), Table 2's CCA row.

As GCNet runs it (github zeroQiaoba/GCNet at 8cce4a0, ``baseline-cca/cca.py``; GCNet's paper,
Lian et al., TPAMI 2023, §5 lists it among the baselines, and the MLA paper's §4.2.1 follows GCNet):

- one regularised CCA per modality pair (``cca.py`` L17-59; three pairs (0,1), (0,2), (1,2) for
  three modalities at L134-159, one pair for two), ``n_components`` = 10 (L67), ``r1 = r2 = 1e-4``
  (L18); each example's representation is the concatenation of both views' ``n_components``
  canonical components of every pair (L161-163), 2·k·pairs values;
- a linear SVM, scikit-learn ``LinearSVC(C=0.01, dual=False)`` (L167), on those components.

Missing modalities (``mla/methods/cca_parts.py``): CCA is fitted on the training split with each
modality's mean and covariance over the rows that have it and each pair's cross-covariance over
the rows that have both. An absent modality is filled with its training mean (GCNet's ``padmeanV1``,
which averages over all splits); after centring its components are exactly zero. The SVM trains on
every training example.

How it runs in the ordinary loop: there is no gradient. The first ``epoch_batches`` call fits the
CCA and the SVM on the whole training split (the ``fitted`` buffer records it, so a resumed run
does not refit); the batches it then yields only score the fitted SVM (``train_step`` returns the
batch's squared hinge loss and changes nothing). Every epoch therefore scores the same model and
validation selects epoch 1. Per-modality prediction (``predict[m]``): the SVM with every other
modality treated as absent (its components zero). Two or three modalities.

Deviations: the fill mean and all statistics come from the training split only (GCNet averages the
fill over train, validation and test); the cross-covariance is normalised by the rows behind it
(GCNet divides by all N - 1 rows, including filled ones); features are the unimodal runs' encoder
outputs (GCNet reads its own utterance-level features). The Table 2 row of MLA's paper cites
GCNet's numbers; this re-runs the method on our features and masks.
"""
from __future__ import annotations

import torch
from torch import nn

from mla.batches import shuffled_batches
from mla.catalog import option_defaults
from mla.methods.base import METHODS, Method
from mla.methods.cca_parts import LinearSVM, cca_fit, features, fill, modality_pairs, whole_split
from mla.methods.option_checks import check_count, check_positive, refuse

CATALOG = {
    "modality_counts": (2, 3),
    "reuses": "unimodal",
    "frozen_features": True,
    "options": {
        "n_components": {"default": 10},
        "r1": {"default": 1.0e-4},
        "r2": {"default": 1.0e-4},
        "svm_c": {"default": 0.01},
    },
}


@METHODS.register("cca")
class CCA(Method):
    """Pairwise regularised CCA of fixed features, then a linear SVM on all components."""

    defaults = option_defaults(CATALOG)
    modality_counts = CATALOG["modality_counts"]

    def __init__(self, encoders: nn.ModuleDict, n_classes: int, feature_dim: int, **options) -> None:
        super().__init__(encoders, n_classes, feature_dim, **options)
        o, s = self.options, feature_dim
        k = check_count("cca", "n_components", o["n_components"])
        if k > s:
            raise refuse("cca", "n_components", k, f"at most the feature size {s} (model.feature_dim)")
        for key in ("r1", "r2"):
            check_positive("cca", key, o[key], zero_ok=True)
        check_positive("cca", "svm_c", o["svm_c"])
        self.pairs = modality_pairs(self.modalities)
        self.register_buffer("mean", torch.zeros(len(self.modalities), s))
        self.register_buffer("proj", torch.zeros(len(self.pairs), 2, s, k))  # pair -> (wa, wb)
        self.register_buffer("corr", torch.zeros(len(self.pairs), k))  # canonical correlations on train
        self.register_buffer("n_both", torch.zeros(len(self.pairs), dtype=torch.long))  # rows behind each pair's Σab
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self.svm = LinearSVM(2 * k * len(self.pairs), n_classes, self.options["svm_c"])

    def components(self, batch: dict, keep: str | None = None, encoded: bool = False) -> torch.Tensor:
        """(B, 2·k·pairs) canonical components; an absent modality's (or, with ``keep``, every
        modality but ``keep``'s) components are zero: its training-mean fill, centred. ``encoded``:
        the batch already holds the encoders' features."""
        present = batch["present"]
        feats = {m: batch[m] for m in self.modalities} if encoded else features(self.encoders, batch)
        if keep is not None:
            present = present & torch.tensor([m == keep for m in self.modalities], device=present.device)
        centred = {i: fill(feats[m], present[:, i], self.mean[i]) - self.mean[i] for i, m in enumerate(self.modalities)}
        return torch.cat([centred[v] @ self.proj[p, side] for p, pair in enumerate(self.pairs)
                          for side, v in enumerate(pair)], dim=1)

    @torch.no_grad()
    def fit(self, data, batch_size: int) -> None:
        """Fit every pair's CCA and the SVM on the whole training split ``data``."""
        feats, present, labels = whole_split(data, batch_size, self.encoders)
        x = {i: feats[m].double().cpu().numpy() for i, m in enumerate(self.modalities)}
        p = present.cpu().numpy()
        o = self.options
        for n, (a, b) in enumerate(self.pairs):
            fit = cca_fit(x[a], x[b], p[:, a], p[:, b], o["n_components"], o["r1"], o["r2"],
                          (self.modalities[a], self.modalities[b]))
            self.mean[a] = torch.from_numpy(fit["mean_a"])
            self.mean[b] = torch.from_numpy(fit["mean_b"])
            self.proj[n, 0] = torch.from_numpy(fit["wa"])
            self.proj[n, 1] = torch.from_numpy(fit["wb"])
            self.corr[n] = torch.from_numpy(fit["corr"])
            self.n_both[n] = int(fit["n_both"])
        z = self.components({**{m: feats[m] for m in self.modalities}, "present": present}, encoded=True)
        self.svm.fit(z.cpu().numpy(), labels.cpu().numpy())
        self.fitted.fill_(True)

    def epoch_batches(self, data, batch_size: int, gen: torch.Generator):
        if not bool(self.fitted):
            self.fit(data, batch_size)
        return shuffled_batches(data, batch_size, gen)

    def train_step(self, batch: dict, optimizer: torch.optim.Optimizer) -> float:
        """No update: the fitted SVM's squared hinge loss on ``batch`` (a diagnostic)."""
        with torch.no_grad():
            loss = float(self.svm.squared_hinge(self.components(batch), batch["label"]))
        # No parameter has a gradient, so this step changes nothing; it keeps the optimizer/scheduler
        # order PyTorch expects (it warns when a scheduler steps before any optimizer step).
        optimizer.zero_grad(set_to_none=True)
        optimizer.step()
        return loss

    def predict(self, batch: dict) -> dict[str, torch.Tensor]:
        out = {"multi": self.svm(self.components(batch))}
        for m in self.modalities if self.score_modalities else ():
            out[m] = self.svm(self.components(batch, keep=m))
        return out

    def epoch_diagnostics(self) -> dict:
        """Per pair: the training canonical correlations and the training rows with both modalities
        behind them (0: no evidence of correlation, every correlation 0)."""
        names = [f"{self.modalities[a]}-{self.modalities[b]}" for a, b in self.pairs]
        return {"canonical_correlations": {p: [round(float(c), 6) for c in self.corr[n]] for n, p in enumerate(names)},
                "rows_with_both": {p: int(self.n_both[n]) for n, p in enumerate(names)}}
