"""Shared pieces of ``cca``, ``dcca`` and ``dccae``: classical CCA, the DCCA correlation objective,
the linear SVM on the learned components, and how absent modalities enter them.

Sources (read for facts, nothing copied): GCNet (Lian et al., TPAMI 2023), github zeroQiaoba/GCNet
at commit 8cce4a0c9a50172abfa79971e77c71c40c1d733d, folder ``baseline-cca/``: ``cca.py`` L17-59
(regularised CCA by whitening + SVD), ``dcca.py`` L41-99 (the DCCA loss, a port of
Michaelvll/DeepCCA), ``util.py`` L124-153 (``padmeanV1``: an absent feature is replaced by the mean
of the present ones) and ``cca.py`` L167 (``LinearSVC(C=0.01, dual=False)`` on the components).

Missing modalities, for all three methods: a modality's fill value is the mean of its features
over the training examples that have it (GCNet averages over train, validation and test, which
reads test data: ours uses the training split only). Correlations are estimated only where data
exist: a modality's covariance over the training rows that have it, a pair's cross-covariance
over the rows that have both. (With GCNet's mean filling the centred filled rows are exactly zero,
so its sums run over the same rows; it divides every sum by all N - 1 rows instead.) An absent
entry is never read: it is replaced with :func:`fill` (``torch.where``) before any arithmetic.
"""
from __future__ import annotations

from itertools import combinations

import numpy as np
import torch
from torch import nn

# Fewest rows that define a (co)variance: below it a modality cannot be centred or whitened.
MIN_ROWS = 2


def modality_pairs(modalities: tuple[str, ...]) -> list[tuple[int, int]]:
    """Index pairs (i, j), i < j, in order: GCNet's three pairs (0,1), (0,2), (1,2) for three modalities."""
    return list(combinations(range(len(modalities)), 2))


def fill(x: torch.Tensor, present: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """``x`` (B, s) with the rows where ``present`` (B,) is False replaced by ``value`` (s,).

    ``torch.where``, not arithmetic: an absent row's entries (even NaN) never reach the result.
    """
    return torch.where(present.unsqueeze(1), x, value.to(x.dtype).expand_as(x))


def present_mean(x: np.ndarray, present: np.ndarray, name: str) -> np.ndarray:
    """Mean of the rows of ``x`` where ``present``; fewer than :data:`MIN_ROWS` such rows is an error."""
    if int(present.sum()) < MIN_ROWS:
        raise ValueError(f"modality {name!r} is present in {int(present.sum())} training examples; CCA needs at "
                         f"least {MIN_ROWS}: lower missing.rates or use more training data")
    return x[present].mean(axis=0)


def inverse_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Σ^(-1/2) of a symmetric positive definite matrix, by its eigendecomposition."""
    d, v = np.linalg.eigh(sigma)
    return (v * d ** -0.5) @ v.T


def cca_fit(xa: np.ndarray, xb: np.ndarray, pa: np.ndarray, pb: np.ndarray, k: int, r1: float, r2: float,
            names: tuple[str, str] = ("a", "b")) -> dict[str, np.ndarray]:
    """Regularised CCA of two views with missing rows (GCNet ``cca.py`` L26-51, Hotelling's CCA).

    ``xa`` (n, sa), ``xb`` (n, sb); ``pa``, ``pb`` (n,) bool presence. Means and covariances per
    view over its present rows, ``Σaa + r1 I`` and ``Σbb + r2 I`` (ddof 1); the cross-covariance
    over the rows with both (``Σab = 0`` with fewer than :data:`MIN_ROWS` of them: no evidence of
    correlation). ``T = Σaa^-1/2 Σab Σbb^-1/2 = U S V^T``; projections ``wa = Σaa^-1/2 U[:, :k]``,
    ``wb = Σbb^-1/2 V[:, :k]``; canonical correlations ``S[:k]``. Returns ``mean_a``, ``mean_b``,
    ``wa``, ``wb``, ``corr`` and ``n_both`` (rows behind ``Σab``).
    """
    if k > min(xa.shape[1], xb.shape[1]):
        raise ValueError(f"n_components {k} exceeds the feature size {min(xa.shape[1], xb.shape[1])}: "
                         f"lower method_options.<method>.n_components")
    xa, xb = xa.astype(np.float64), xb.astype(np.float64)
    ma, mb = present_mean(xa, pa, names[0]), present_mean(xb, pb, names[1])
    ca, cb = xa[pa] - ma, xb[pb] - mb
    saa = ca.T @ ca / (len(ca) - 1) + r1 * np.eye(xa.shape[1])
    sbb = cb.T @ cb / (len(cb) - 1) + r2 * np.eye(xb.shape[1])
    both = pa & pb
    sab = np.zeros((xa.shape[1], xb.shape[1]))
    if both.sum() >= MIN_ROWS:
        sab = (xa[both] - ma).T @ (xb[both] - mb) / (both.sum() - 1)
    ia, ib = inverse_sqrt(saa), inverse_sqrt(sbb)
    u, s, vt = np.linalg.svd(ia @ sab @ ib)
    return {"mean_a": ma, "mean_b": mb, "wa": ia @ u[:, :k], "wb": ib @ vt.T[:, :k], "corr": s[:k],
            "n_both": np.int64(both.sum())}


def total_correlation(h1: torch.Tensor, h2: torch.Tensor, k: int, r1: float, r2: float,
                      eps: float = 1e-9) -> torch.Tensor:
    """DCCA's objective: the sum of the top-``k`` canonical correlations of ``h1``, ``h2`` (m, o).

    Andrew et al. 2013 (ICML), section "Deep CCA": ``corr = Σ_{i<=k} σ_i(T)``, ``T = Σ11^-1/2 Σ12 Σ22^-1/2``, with
    ``Σ11 + r1 I``, ``Σ22 + r2 I`` (ddof 1). As GCNet's port (``dcca.py`` L50-99): eigenvalues of
    ``Σ11``, ``Σ22`` at or below ``eps`` are dropped, and the singular values are the square roots of
    the top-``k`` eigenvalues of ``T^T T + r1 I`` (clamped at ``eps``); ``torch.linalg.eigh`` /
    ``eigvalsh`` replace the removed ``torch.symeig``. Differentiable in ``h1``, ``h2``.
    """
    m = h1.shape[0]
    h1, h2 = h1 - h1.mean(0), h2 - h2.mean(0)
    s12 = h1.T @ h2 / (m - 1)
    s11 = h1.T @ h1 / (m - 1) + r1 * torch.eye(h1.shape[1], dtype=h1.dtype, device=h1.device)
    s22 = h2.T @ h2 / (m - 1) + r2 * torch.eye(h2.shape[1], dtype=h2.dtype, device=h2.device)

    def root_inv(s: torch.Tensor) -> torch.Tensor:
        d, v = torch.linalg.eigh(s)
        keep = d > eps
        d, v = d[keep], v[:, keep]
        return (v * d.rsqrt()) @ v.T

    t = root_inv(s11) @ s12 @ root_inv(s22)
    tt = t.T @ t + r1 * torch.eye(t.shape[1], dtype=t.dtype, device=t.device)
    ev = torch.linalg.eigvalsh(tt).clamp_min(eps)
    return ev.topk(min(k, ev.numel())).values.sqrt().sum()


class LinearSVM(nn.Module):
    """A linear SVM's decision function as logits; fitted by scikit-learn's ``LinearSVC``.

    GCNet fits ``LinearSVC(C=0.01, dual=False)`` on the components (``cca.py`` L167, ``dcca.py``
    L552); its weights are parameters of this module that no gradient reaches (``requires_grad``
    False), so they are saved, resumed and restored with the method. Logits per class: the
    one-vs-rest decision function ``z W^T + b`` (binary: ``[0, d]``, so that argmax is
    ``LinearSVC.predict``). A class absent from the training labels keeps weight 0 and bias
    :data:`ABSENT_CLASS_BIAS`, so it is never predicted.
    """

    ABSENT_CLASS_BIAS = -1.0e4

    def __init__(self, in_dim: int, n_classes: int, c: float) -> None:
        super().__init__()
        self.c = c
        self.weight = nn.Parameter(torch.zeros(n_classes, in_dim), requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(n_classes), requires_grad=False)

    @torch.no_grad()
    def fit(self, z: np.ndarray, labels: np.ndarray) -> None:
        """Fit on the training components ``z`` (n, d) and their ``labels`` (n,)."""
        from sklearn.svm import LinearSVC  # here, not at the top: importing scikit-learn costs every job ~1 s

        w = np.zeros(tuple(self.weight.shape))
        b = np.full(self.bias.shape[0], self.ABSENT_CLASS_BIAS)
        classes = np.unique(labels).astype(int)
        if len(classes) == 1:  # LinearSVC refuses a single class: the one seen is always predicted
            b[classes[0]] = 0.0
        else:
            clf = LinearSVC(C=self.c, dual=False, random_state=0).fit(z.astype(np.float64), labels)
            if len(classes) == 2:  # scikit-learn keeps one row: d > 0 predicts classes[1]
                w[classes[1]], b[classes[1]] = clf.coef_[0], clf.intercept_[0]
                b[classes[0]] = 0.0
            else:
                w[classes], b[classes] = clf.coef_, clf.intercept_
        self.weight.copy_(torch.from_numpy(w))
        self.bias.copy_(torch.from_numpy(b))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.weight.T.to(z.dtype) + self.bias.to(z.dtype)

    def squared_hinge(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean one-vs-rest squared hinge loss of ``z`` (what ``LinearSVC`` minimises, without its
        regulariser): a diagnostic of the fitted SVM on a batch."""
        y = -torch.ones(z.shape[0], self.weight.shape[0], dtype=z.dtype, device=z.device)
        y[torch.arange(z.shape[0]), labels] = 1.0
        return (1 - y * self(z)).clamp_min(0).square().mean()


def mlp(sizes: list[int]) -> nn.Sequential:
    """GCNet's ``MLP`` (``dcca.py`` L104-119): Linear + BatchNorm1d + ReLU between hidden sizes, a
    plain Linear last."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers)


def features(encoders: nn.ModuleDict, batch: dict) -> dict[str, torch.Tensor]:
    """Each modality's (B, s) encoder output (identity maps on fixed features in the grid), the
    encoder fed zeros where the modality is absent so that nothing absent reaches it; the absent
    rows' outputs are replaced by the caller (:func:`fill`)."""
    out = {}
    for i, m in enumerate(encoders):
        x = batch[m]
        keep = batch["present"][:, i].view(-1, *([1] * (x.dim() - 1)))
        out[m] = encoders[m](torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device)))
    return out


@torch.no_grad()
def whole_split(data, batch_size: int,
                encoders: nn.ModuleDict) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Every example of a split (``SplitTensors``) at once: :func:`features` per modality, ``present``
    (n, M) and labels, on the split's device."""
    from mla.batches import eval_batches

    parts = list(eval_batches(data, batch_size))
    feats = [features(encoders, b) for b in parts]
    return ({m: torch.cat([f[m] for f in feats]) for m in encoders},
            torch.cat([b["present"] for b in parts]), torch.cat([b["label"] for b in parts]))
