"""``mla``: Multimodal Learning with Alternating Unimodal Adaptation, as the paper states it.

Training ([P] Eqs. 1-5, Algorithm 1): step t trains modality m_t = t mod M alone through the
head g shared by all modalities, on its own mini-batch from D_{m_t}. With head gradient
modification (HGM) the head-weight gradient is multiplied by P_t, updated by recursive
least squares from the mean feature h̄ of the current modality (Eq. 5, scalar denominator,
P_0 = I of size s). Inference (Eqs. 6-8): per-example entropy-weighted sum of the
modalities' logits ("dynamic"), or their uniform mean ("uniform", the no-DF ablation).

Choices the paper leaves open (reference §1.6), as options:
- ``hgm_order``: ``current`` builds P_t from this step's modality before the head update
  (Algorithm 1 order); ``previous`` projects with P_{t-1} and then updates P (OWM, prose).
- ``hbar``: ``batch`` = mean of the detached mini-batch features ([C]); ``running`` = running
  mean over the modality's data seen so far in the epoch.
- ``alpha_schedule``: ``released`` = 0.1^(1 + i/N), i the modality's batch index in the
  epoch, N its batches per epoch ([C]); ``constant`` = ``alpha``.
- Step t = 0 is a plain gradient step and leaves P = I (Eq. 3, first case; [C] likewise).
- The head bias is not projected. Samples whose modality m is missing are not in D_m.
"""
from __future__ import annotations

import math
from typing import Iterator

import torch
from torch import nn

from mla.batches import SplitTensors, shuffled_batches
from mla.fusion import FUSIONS, fuse
from mla.methods.base import METHODS, Method, cross_entropy
from mla.catalog import option_defaults

# Grid facts and options, read without importing this file (mla/catalog.py); `defaults` below come from it.
CATALOG = {
    "per_modality": False,
    "modality_counts": [2, 3],
    "reuses": None,
    "options": {
        "hgm": {"default": True},
        "hgm_order": {"default": "current", "choices": ["current", "previous"]},
        "hbar": {"default": "batch", "choices": ["batch", "running"]},
        "alpha_schedule": {"default": "released", "choices": ["released", "constant"]},
        "alpha": {"default": 0.1},
        "fusion": {"default": "dynamic", "choices": ["dynamic", "uniform"]},  # mla/fusion.py FUSIONS
    },
}


def rls_update(P: torch.Tensor, hbar: torch.Tensor, alpha: float) -> torch.Tensor:
    """Eq. (5): P_t = P_{t-1} - q h̄ᵀ P_{t-1}, q = P_{t-1} h̄ / (alpha + h̄ᵀ P_{t-1} h̄)."""
    Ph = P @ hbar
    q = Ph / (alpha + hbar @ Ph)
    return P - torch.outer(q, hbar @ P)


def released_alpha(i: int, n: int) -> float:
    """[C]'s schedule 0.1^(1 + i/N): from 0.1 down to ~0.01 within each epoch."""
    return 0.1 ** (1 + i / n)


@METHODS.register("mla")
class MLA(Method):
    """Alternating unimodal training with a shared head, HGM and dynamic fusion."""

    defaults = option_defaults(CATALOG)
    choices = {
        "hgm_order": ("current", "previous"),
        "hbar": ("batch", "running"),
        "alpha_schedule": ("released", "constant"),
        "fusion": tuple(FUSIONS),
    }

    def __init__(self, encoders: nn.ModuleDict, n_classes: int, feature_dim: int, **options) -> None:
        super().__init__(encoders, n_classes, feature_dim, **options)
        for key, valid in self.choices.items():
            if self.options[key] not in valid:
                raise ValueError(f"method mla: option {key}={self.options[key]!r}; valid: {', '.join(valid)}")
        self.head = nn.Linear(feature_dim, n_classes)
        # Method state lives in buffers so that checkpoints carry it.
        self.register_buffer("P", torch.eye(feature_dim, dtype=torch.float64))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.register_buffer("feat_sum", torch.zeros(len(self.modalities), feature_dim, dtype=torch.float64))
        self.register_buffer("feat_count", torch.zeros(len(self.modalities), dtype=torch.float64))
        self._epoch_start = 0
        self._per_epoch = 1

    def current_modality(self) -> str:
        """Eq. (1): m_t = t mod M."""
        return self.modalities[int(self.step) % len(self.modalities)]

    def epoch_batches(self, data: SplitTensors, batch_size: int, gen: torch.Generator) -> Iterator[dict]:
        """Round-robin modality steps, each on its own mini-batch of that modality's data.

        Every modality gets N = ceil(max_m |D_m| / B) batches per epoch from its own shuffled
        stream (a stream restarts, reshuffled, if its modality has fewer present samples).
        """
        rows = [torch.nonzero(data.present[:, i]).flatten() for i in range(len(self.modalities))]
        n = max(1, math.ceil(max(len(r) for r in rows) / batch_size))
        self._epoch_start, self._per_epoch = int(self.step), n
        self.feat_sum.zero_()
        self.feat_count.zero_()
        streams = [self._stream(data, r, batch_size, gen, (m,)) for r, m in zip(rows, self.modalities)]
        offset = int(self.step) % len(self.modalities)
        for k in range(n * len(self.modalities)):
            yield next(streams[(offset + k) % len(self.modalities)])

    @staticmethod
    def _stream(data, rows, batch_size, gen, modalities) -> Iterator[dict]:
        while True:
            yield from shuffled_batches(data, batch_size, gen, rows, modalities)

    def _alpha(self) -> float:
        if self.options["alpha_schedule"] == "constant":
            return float(self.options["alpha"])
        i = (int(self.step) - self._epoch_start) // len(self.modalities)
        return released_alpha(i, self._per_epoch)

    def _hbar(self, mi: int, feats: torch.Tensor) -> torch.Tensor:
        batch_mean = feats.mean(0).to(torch.float64)
        if self.options["hbar"] == "batch":
            return batch_mean
        self.feat_sum[mi] += feats.sum(0).to(torch.float64)
        self.feat_count[mi] += feats.shape[0]
        return self.feat_sum[mi] / self.feat_count[mi]

    def modify_head_gradient(self, mi: int, feats: torch.Tensor) -> None:
        """Eqs. (3)-(5): replace the head-weight gradient by grad_W @ P_t."""
        hbar = self._hbar(mi, feats.detach())
        if self.options["hgm_order"] == "current":
            self.P.copy_(rls_update(self.P, hbar, self._alpha()))
            P = self.P
        else:
            P = self.P.clone()
            self.P.copy_(rls_update(self.P, hbar, self._alpha()))
        grad = self.head.weight.grad
        self.head.weight.grad = (grad.to(torch.float64) @ P).to(grad.dtype)

    def train_step(self, batch: dict, optimizer: torch.optim.Optimizer) -> float:
        """One modality step (Algorithm 1): L_t on m_t's batch, encoder + projected head update."""
        m = self.current_modality()
        if m not in batch:
            raise ValueError(f"mla step {int(self.step)} trains {m}, but the batch has no {m}")
        feats = self.encoders[m](batch[m])
        loss = cross_entropy(self.head(feats), batch["label"])
        optimizer.zero_grad(set_to_none=True)  # other encoders keep grad None: SGD leaves them unchanged
        loss.backward()
        if self.options["hgm"] and int(self.step) > 0:
            self.modify_head_gradient(self.modalities.index(m), feats)
        optimizer.step()
        self.step += 1
        return float(loss.detach())

    def predict(self, batch: dict) -> dict[str, torch.Tensor]:
        """Per-modality f_m = g(h_m(x)), and their fusions (Eqs. 6-8)."""
        per = {m: self.head(self.encoders[m](batch[m])) for m in self.modalities}
        stacked = torch.stack([per[m] for m in self.modalities])
        present = batch["present"].T if "present" in batch else None
        out = dict(per)
        for name, weights in FUSIONS.items():
            out[f"multi:{name}"] = fuse(stacked, weights(stacked, present))
        out["multi"] = out[f"multi:{self.options['fusion']}"]
        return out
