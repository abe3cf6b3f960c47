"""Modality gap between encoders' feature clouds (pure numpy).

Definition (Liang et al., NeurIPS 2022, "Mind the Gap"): the Euclidean distance between the
centroids of the L2-normalised embeddings of two modalities. The MLA paper (Figure 3) prints
"Gap Distance" values without a formula; using this definition is an assumption.
"""
from __future__ import annotations

from itertools import combinations

import numpy as np

DEFINITION = (
    "modality gap = Euclidean distance between the centroids of the L2-normalised "
    "test-set encoder features of two modalities (Liang et al. 2022, 'Mind the Gap'); "
    "'mean' is the mean over all modality pairs"
)


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of ``x`` (N, s) scaled to unit length, in float64; all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, eps)


def modality_gap(a: np.ndarray, b: np.ndarray) -> float:
    """Distance between the centroids of the L2-normalised rows of ``a`` (N, s) and ``b`` (M, s)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"modality_gap needs two (N, s) arrays of equal width, got {a.shape} and {b.shape}")
    if len(a) == 0 or len(b) == 0:
        raise ValueError("modality_gap needs at least one row per modality")
    return float(np.linalg.norm(l2_normalise(a).mean(axis=0) - l2_normalise(b).mean(axis=0)))


def gap_summary(features: dict[str, np.ndarray]) -> dict[str, float]:
    """The gap of every modality pair (key ``"a-b"`` in the dict's modality order) and their ``mean``."""
    names = list(features)
    if len(names) < 2:
        raise ValueError(f"gap_summary needs at least two modalities, got {names}")
    out = {f"{a}-{b}": modality_gap(features[a], features[b]) for a, b in combinations(names, 2)}
    out["mean"] = float(np.mean(list(out.values())))
    return out
