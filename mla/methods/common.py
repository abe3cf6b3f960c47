"""Shared pieces of the feature-fusion baselines (``sum``, ``film``, ``bigated``, ``ogm_ge``, ``qmf``).

A :class:`FusionMethod` runs every encoder, fuses the features with its own ``fuse`` and
trains on the cross-entropy of the fused logits (the "Normal" joint training of the MLA code's and of
OGM-GE's ``main.py``). Its per-modality predictor is the paper's "deactivation" (Zhang et al.,
CVPR 2024, §4.1.1 and the Table 1 caption): the other modalities' **encoder outputs are zeroed
before fusion** and the whole fused network is evaluated (:func:`deactivate`). Methods with
another per-modality rule (``sum``) override :meth:`FusionMethod.unimodal_logits`.
docs/methods/baselines.md gives each baseline's equations and sources.

Missing modalities: nothing special. The batch already carries zeros as the absent
modalities' inputs (``mla.batches``), exactly as the released code feeds them, so an absent
modality enters fusion as its encoder's response to a zero input, as in the MLA authors' code
(github.com/Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-Adaptation at commit
ab6c184579f9ff390e9c9b8216c9900c2a43545b, ``dataset/dataset.py`` L118-119 and L156-157 multiply a
masked modality's input by 0).
(This is not the same as deactivation: deactivation zeroes the encoder *output*.)
docs/methods/missing-modalities.md covers the missing-modality protocol.
"""
from __future__ import annotations

import torch

from mla.methods.base import Method, cross_entropy


def deactivate(feats: dict[str, torch.Tensor], keep: str) -> dict[str, torch.Tensor]:
    """The features with every modality but ``keep`` replaced by zeros (same shapes)."""
    if keep not in feats:
        raise KeyError(f"cannot keep modality {keep!r}; features have {', '.join(feats)}")
    return {m: f if m == keep else torch.zeros_like(f) for m, f in feats.items()}


class FusionMethod(Method):
    """Joint training of all encoders through a fusion network ``fuse(features) -> logits``."""

    def features(self, batch: dict) -> dict[str, torch.Tensor]:
        """Each modality's encoder output, in ``self.modalities`` order."""
        return self.embed(batch)

    def fuse(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        """The fusion network: features of every modality -> logits (B, C)."""
        raise NotImplementedError

    def unimodal_logits(self, feats: dict[str, torch.Tensor], m: str) -> torch.Tensor:
        """Modality ``m``'s prediction: the fused network with the other modalities deactivated."""
        return self.fuse(deactivate(feats, m))

    def train_step(self, batch: dict, optimizer: torch.optim.Optimizer) -> float:
        """Cross-entropy on the fused logits only, all encoders and the fusion updated."""
        return self.optimise(cross_entropy(self.fuse(self.features(batch)), batch["label"]), optimizer)

    def predict(self, batch: dict) -> dict[str, torch.Tensor]:
        feats = self.features(batch)
        out = {"multi": self.fuse(feats)}
        for m in self.modalities:
            out[m] = self.unimodal_logits(feats, m)
        return out
