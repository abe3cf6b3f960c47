"""Fusion of per-modality predictions at test time.

Shapes: ``logits`` is (M, B, C) (modality, example, class); ``present`` is (M, B) bool.
"""
from __future__ import annotations

import torch


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Eq. (7): e = -p^T log p with p = softmax over the class axis (last); natural log."""
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def _present(logits: torch.Tensor, present: torch.Tensor | None) -> torch.Tensor:
    """Where an example has no modality at all, every (zeroed) modality counts as present."""
    if present is None:
        return torch.ones(logits.shape[:2], dtype=torch.bool, device=logits.device)
    return present | ~present.any(0, keepdim=True)


def entropy_weights(logits: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. (8), per example: lambda_{m,r} = softmax over modalities of -e_{m,r}.

    The max-entropy shift of Eq. (8) cancels; softmax's own shift keeps it stable. Absent
    modalities get weight 0 and the rest are renormalised. (M, B, C) -> (M, B).
    """
    score = (-entropy(logits)).masked_fill(~_present(logits, present), float("-inf"))
    return torch.softmax(score, dim=0)


def uniform_weights(logits: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
    """"No DF": the mean of the present modalities' logits. (M, B, C) -> (M, B)."""
    w = _present(logits, present).to(logits.dtype)
    return w / w.sum(0, keepdim=True)


def fuse(logits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Eq. (6): y_r = sum_m lambda_{m,r} f_m(x_{m,r}). (M, B, C), (M, B) -> (B, C)."""
    return (weights.unsqueeze(-1) * logits).sum(0)


FUSIONS = {"dynamic": entropy_weights, "uniform": uniform_weights}
