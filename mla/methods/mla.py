"""``mla``: Multimodal Learning with Alternating Unimodal Adaptation, as the paper states it.

Sources: [P] Zhang, Yoon, Bansal, Yao, "Multimodal Representation Learning by Alternating
Unimodal Adaptation", CVPR 2024, §3 (Eqs. 1-8, Algorithm 1). [C] the official repository
github.com/Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-Adaptation at commit
ab6c184579f9ff390e9c9b8216c9900c2a43545b: ``utils/utils.py`` L12-41 (``GSPlugin``, the head
gradient modification), ``main.py`` L143 (``batch_step``), L419-481 (the alternating step),
L819 (one ``GSPlugin`` for the whole run). docs/methods/mla.md gives the equations and every
deviation in full.

Training ([P] Eqs. 1-5, Algorithm 1): step t trains modality m_t = t mod M alone through the
head g shared by all modalities, on its own mini-batch from D_{m_t}. With head gradient
modification (HGM) the head-weight gradient is multiplied by P_t, updated by recursive
least squares from the mean feature h̄ of the current modality (Eq. 5, scalar denominator,
P_0 = I of size s). Inference (Eqs. 6-8): per-example entropy-weighted sum of the
modalities' logits ("dynamic"), or their uniform mean ("uniform", the no-DF ablation).

Options (choices the paper leaves open):
- ``hgm``: true = Eqs. (3)-(5); false = plain head gradient (Table 3's HGM-off columns).
- ``hgm_order``: ``current`` builds P_t from this step's modality before the head update
  (Algorithm 1 order, and [C] when its hook fires); ``previous`` projects with P_{t-1} and
  then updates P (the prose's "previous modality", as in orthogonal weight modification).
- ``hbar`` (h̄ in Eq. 5; Eq. 4 defines it as the mean of h_m over ALL N_m examples of the
  modality, with the current encoder):
  ``running`` (default) = mean of the detached features of every example of the modality
  seen so far in training (all epochs). It is the estimate of Eq. (4) whose noise vanishes as
  data accumulate, at O(s) per step and no extra pass over the data; its cost is that early
  (older-encoder) features keep their weight. ``epoch`` = the same mean restarted at every
  epoch (tracks the encoder, but each restart feeds P a few noisy, few-sample means, so P
  shrinks slowly in every direction over the epochs). ``batch`` = mean of this step's
  mini-batch, the reading of [C]'s ``GSPlugin`` (``utils/utils.py`` L34), whose hook never
  fires at ab6c184 (L32 tests the name ``"module.weight"``, which the bare head never has):
  a new noisy mean every step shrinks P in every direction within about an epoch, which
  freezes the head. A periodic exact pass over D_m was not chosen: one more forward pass
  over the modality's training data per period, with BatchNorm/dropout state to manage.
  bench/hgm_retention.py measures the three (docs/methods/mla.md).
- ``alpha_schedule``: ``released`` = 0.1^(1 + i/N), i the index of the round (one step of
  each modality) within the epoch and N the rounds per epoch: [C] passes the paired loader's
  ``batch_step`` and ``len(dataloader)`` to every modality's hook of that batch
  (``main.py`` L437-462, ``utils/utils.py`` L26-27); ``constant`` = ``alpha`` ([P]: "a
  predefined hyperparameter").
- ``fusion``: ``dynamic`` (Eqs. 6-8) or ``uniform``.
- Step t = 0 is a plain gradient step and leaves P = I (Eq. 3, first case; [C] L29 likewise).
- The head bias is not projected (P is s x s and acts on the weight's input dimension; [C]
  projects only the weight). Samples whose modality m is missing are not in D_m.

Diagnostics (``epoch_diagnostics``, merged into each epoch's ``log.jsonl`` record): with HGM
on, the head-gradient retention ||∇W·P||_F / ||∇W||_F (mean over the epoch's HGM steps and
the last step's value, P being the matrix that projected that step) and P's smallest and
largest eigenvalue and trace at the end of the epoch. With HGM off nothing is logged: the
gradient is not modified, and no retention is measured.
"""
from __future__ import annotations

import math
from typing import Iterator

import torch
from torch import nn

from mla.batches import SplitTensors, shuffled_batches
from mla.fusion import FUSIONS, fuse
from mla.methods.base import METHODS, Method, cross_entropy
from mla.catalog import option_choices, option_defaults

# Grid facts and options, read without importing this file (mla/catalog.py); `defaults` below come from it.
CATALOG = {
    "per_modality": False,
    "modality_counts": [2, 3],
    "reuses": None,
    "options": {
        "hgm": {"default": True},
        "hgm_order": {"default": "current", "choices": ["current", "previous"]},
        "hbar": {"default": "running", "choices": ["running", "epoch", "batch"]},
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
    """[C]'s schedule 0.1^(1 + i/N) (``utils/utils.py`` L26-27): from 0.1 down to ~0.01 within
    each epoch, i the round index in the epoch, N the rounds per epoch."""
    return 0.1 ** (1 + i / n)


def retention(grad: torch.Tensor, projected: torch.Tensor) -> float | None:
    """||grad·P||_F / ||grad||_F from the gradient and its projection: the fraction of the
    head-weight gradient HGM keeps (None for a zero gradient, where it is undefined)."""
    norm = float(torch.linalg.matrix_norm(grad))
    return None if norm == 0.0 else float(torch.linalg.matrix_norm(projected)) / norm


def _sig(x: float) -> float:
    """Six significant digits: eigenvalues of P span many decades, fixed decimals would zero them."""
    return float(f"{x:.6g}")


@METHODS.register("mla")
class MLA(Method):
    """Alternating unimodal training with a shared head, HGM and dynamic fusion."""

    defaults = option_defaults(CATALOG)
    choices = option_choices(CATALOG)

    def __init__(self, encoders: nn.ModuleDict, n_classes: int, feature_dim: int, **options) -> None:
        super().__init__(encoders, n_classes, feature_dim, **options)
        for key, valid in self.choices.items():
            if self.options[key] not in valid:
                raise ValueError(f"method mla: option {key}={self.options[key]!r}; valid: {', '.join(valid)}")
        self.head = nn.Linear(feature_dim, n_classes)
        # Method state lives in buffers so that checkpoints carry it (resume is exact).
        self.register_buffer("P", torch.eye(feature_dim, dtype=torch.float64))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        # Sum and count of each modality's features seen (hbar running / epoch).
        self.register_buffer("feat_sum", torch.zeros(len(self.modalities), feature_dim, dtype=torch.float64))
        self.register_buffer("feat_count", torch.zeros(len(self.modalities), dtype=torch.float64))
        # Per-epoch bookkeeping, reset by epoch_batches; checkpoints are taken between epochs.
        self._epoch_start = 0
        self._per_epoch = 1
        self._retention: list[float] = []

    def current_modality(self) -> str:
        """Eq. (1): m_t = t mod M."""
        return self.modalities[int(self.step) % len(self.modalities)]

    def start_epoch(self, rounds: int) -> None:
        """Begin an epoch of ``rounds`` rounds (one step of each modality per round)."""
        self._epoch_start, self._per_epoch = int(self.step), rounds
        self._retention = []
        if self.options["hbar"] == "epoch":
            self.feat_sum.zero_()
            self.feat_count.zero_()

    def epoch_batches(self, data: SplitTensors, batch_size: int, gen: torch.Generator) -> Iterator[dict]:
        """Round-robin modality steps, each on its own mini-batch of that modality's data.

        Every modality gets N = ceil(max_m |D_m| / B) batches per epoch from its own shuffled
        stream (a stream restarts, reshuffled, if its modality has fewer present samples).
        """
        rows = [torch.nonzero(data.present[:, i]).flatten() for i in range(len(self.modalities))]
        n = max(1, math.ceil(max(len(r) for r in rows) / batch_size))
        self.start_epoch(n)
        streams = [self._stream(data, r, batch_size, gen, (m,)) for r, m in zip(rows, self.modalities)]
        offset = int(self.step) % len(self.modalities)
        for k in range(n * len(self.modalities)):
            yield next(streams[(offset + k) % len(self.modalities)])

    @staticmethod
    def _stream(data, rows, batch_size, gen, modalities) -> Iterator[dict]:
        while True:
            yield from shuffled_batches(data, batch_size, gen, rows, modalities)

    def alpha(self) -> float:
        """α of the current step: the constant, or [C]'s schedule at this step's round index."""
        if self.options["alpha_schedule"] == "constant":
            return float(self.options["alpha"])
        i = (int(self.step) - self._epoch_start) // len(self.modalities)
        return released_alpha(i, self._per_epoch)

    def observe(self, mi: int, feats: torch.Tensor) -> None:
        """Add a batch of modality ``mi``'s detached features to its running sum (Eq. 4's mean)."""
        self.feat_sum[mi] += feats.detach().to(torch.float64).sum(0)
        self.feat_count[mi] += feats.shape[0]

    def hbar(self, mi: int, feats: torch.Tensor) -> torch.Tensor:
        """h̄ of this step (option ``hbar``): the batch mean, or the running mean of the modality."""
        if self.options["hbar"] == "batch":
            return feats.detach().mean(0).to(torch.float64)
        return self.feat_sum[mi] / self.feat_count[mi]

    def modify_head_gradient(self, mi: int, feats: torch.Tensor) -> None:
        """Eqs. (3)-(5): replace the head-weight gradient by grad_W @ P_t (bias untouched)."""
        hbar = self.hbar(mi, feats)
        if self.options["hgm_order"] == "current":
            self.P.copy_(rls_update(self.P, hbar, self.alpha()))
            P = self.P
        else:
            P = self.P.clone()
            self.P.copy_(rls_update(self.P, hbar, self.alpha()))
        grad = self.head.weight.grad.to(torch.float64)
        projected = grad @ P
        kept = retention(grad, projected)
        if kept is not None:
            self._retention.append(kept)
        self.head.weight.grad = projected.to(self.head.weight.grad.dtype)

    def epoch_diagnostics(self) -> dict:
        """HGM's effect in the epoch just trained (see the module docstring); {} with HGM off."""
        if not self.options["hgm"]:
            return {}
        eig = torch.linalg.eigvalsh(self.P)
        out = {"hgm_P_eig_min": _sig(float(eig[0])), "hgm_P_eig_max": _sig(float(eig[-1])),
               "hgm_P_trace": _sig(float(self.P.trace()))}
        if self._retention:  # an epoch of one step (t = 0 only) has no HGM step
            out["hgm_retention_mean"] = _sig(math.fsum(self._retention) / len(self._retention))
            out["hgm_retention_last"] = _sig(self._retention[-1])
        return out

    def train_step(self, batch: dict, optimizer: torch.optim.Optimizer) -> float:
        """One modality step (Algorithm 1): L_t on m_t's batch, encoder + projected head update."""
        m = self.current_modality()
        if m not in batch:
            raise ValueError(f"mla step {int(self.step)} trains {m}, but the batch has no {m}")
        feats = self.encoders[m](batch[m])
        loss = cross_entropy(self.head(feats), batch["label"])
        optimizer.zero_grad(set_to_none=True)  # other encoders keep grad None: SGD leaves them unchanged
        loss.backward()
        if self.options["hgm"]:
            mi = self.modalities.index(m)
            if self.options["hbar"] != "batch":
                self.observe(mi, feats)
            if int(self.step) > 0:  # Eq. (3): t = 0 is a plain step
                self.modify_head_gradient(mi, feats)
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
