"""``ogm_ge``: On-the-fly Gradient Modulation with Generalization Enhancement (Peng et al., CVPR 2022).

Sources: OGM-GE's ``main.py`` (github.com/GeWu-Lab/OGM-GE_CVPR2022, commit 343dc1d) L57-153
and its README; the MLA authors' copy in [C] ``main.py`` L312-410 (reference MLA.md §3.9).

Model and loss: concatenation fusion, ``Linear(M s, C)`` on ``[h_1; ...; h_M]``, trained with
cross-entropy on the fused logits only (OGM-GE ``main.py`` L95-98).

Modulation, once per batch after ``backward`` (OGM-GE ``main.py`` L105-148):

1. Each modality's logits come from its slice of the concat head, ``W[:, m] h_m + b / M``
   (OGM-GE L88-93, bias / 2 for two modalities; [C] bias / 3 for three), i.e.
   :func:`mla.methods.concat.subhead_logits`.
2. Scores ``s_m = sum_i softmax(logits_m)_i[y_i]`` over the batch (OGM-GE L105-106), detached.
3. Discrepancy ratio and coefficient (OGM-GE L108-124, the paper's Eq. 10): the dominant
   modality u = argmax_m s_m has ``rho = s_u / s_other`` and, **if rho > 1**,
   ``k_u = 1 - tanh(alpha * relu(rho))`` (relu is the identity for rho > 0; note it is
   ``alpha * rho``, not ``alpha * (rho - 1)``); every other modality has k = 1.
4. Inside the modulation window, every selected encoder parameter's gradient becomes
   ``g * k_m + N(0, (std(g) + 1e-8)^2)`` (OGM-GE, "GE", L136-148; the std is that of the
   unscaled gradient). GE noise is added to the selected parameters of **every** encoder,
   the non-dominant ones (k = 1) included, as OGM-GE does. With
   ``gaussian_enhancement=False`` this is plain OGM (``g * k_m``). The fusion head is never
   modulated. Parameters with a single element have std 0 (torch's std would be NaN).

Window: epochs e with ``modulation_starts <= e <= modulation_ends``, **inclusive at both
ends** as in both codes (OGM-GE L132 and [C] L346/L392, ``# bug fixed``), epochs counted
from 0 as in OGM-GE's loop. The method knows the epoch by counting its ``epoch_batches``
calls (buffer ``epoch``: -1 before the first epoch; a ``train_step`` before any
``epoch_batches`` counts as epoch 0).

Three modalities (our generalisation): u = argmax_m s_m (first on ties) and, by default,
``rho = s_u / sum_{k != u} s_k`` -- the ratio [C] uses for three modalities (``main.py``
L322-324), which for M = 2 is OGM-GE's ``s_u / s_other``. Option ``ratio_others="mean"``
uses the mean of the other scores instead. Differences from [C]'s three-modality branch
(L326-337): [C] tests v, then t, then falls through to a and modulates **a even when
ratio_a < 1**; we modulate only the argmax modality and only when rho > 1 (Eq. 10).
For M = 2 the only difference from OGM-GE is a tie s_a = s_v, where OGM-GE modulates audio
with ``1 - tanh(alpha)`` and we modulate nothing.

Which parameters: ``modulated_params="all"`` (default, our choice) modulates **all
parameters of the dominant modality's encoder** (and adds GE noise to all parameters of every
encoder). ``"4d"`` restricts both to 4-D (convolution) weights, as OGM-GE and [C] select them
(``len(parms.grad.size()) == 4``); this makes OGM-GE a no-op for encoders without 4-D weights,
which is what [C] does on its M3AE path (reference MLA.md §3.9, D18).

Hyper-parameters (provenance):
- ``alpha = 0.3``: [C]'s default (``main.py`` L38). OGM-GE's ``--alpha`` has no default
  (``required=True``, L43); its README's "default modulation setting" uses 0.1 and
  recommends 0.1 for VGGSound and 0.8 for CREMA-D.
- ``modulation_starts = 0``, ``modulation_ends = 50``: both codes' defaults
  (OGM-GE L41-42, [C] L36-37).
- ``gaussian_enhancement = True`` (OGM_GE rather than OGM): [P] Table 1 reports OGM-GE.

Per-modality predictor ([P] §4.1.1): the other modalities are deactivated -- their encoder
outputs zeroed -- and the fused head is evaluated, ``W[:, m] h_m + b``. This differs from
[C], whose unimodal rows slice the head with ``b / M`` (reference MLA.md E3; that variant
is the ``concat`` method's per-modality rule).
Missing modalities: inputs zeroed by the batch, as in [C]; the scores s_m sum over the
whole batch, absent samples included, as [C] would compute them.
"""
from __future__ import annotations

import math
from typing import Iterator

import torch
from torch import nn

from mla.batches import SplitTensors
from mla.methods.base import METHODS, cross_entropy
from mla.methods.common import FusionMethod
from mla.methods.concat import subhead_logits
from mla.catalog import option_defaults

# Grid facts and options, read without importing this file (mla/catalog.py); `defaults` below come from it.
CATALOG = {
    "per_modality": False,
    "modality_counts": [2, 3],
    "reuses": None,
    "options": {
        "alpha": {"default": 0.3},
        "modulation_starts": {"default": 0},
        "modulation_ends": {"default": 50},
        "gaussian_enhancement": {"default": True},
        "modulated_params": {"default": "all", "choices": ["all", "4d"]},
        "ratio_others": {"default": "sum", "choices": ["sum", "mean"]},
    },
}


def true_class_scores(logits: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """``s_m = sum_i softmax(logits_m)_i[y_i]`` for each modality's logits; (M,), detached."""
    probs = torch.stack([torch.softmax(lg.detach(), dim=1) for lg in logits])  # (M, B, C)
    return probs.gather(2, labels.view(1, -1, 1).expand(len(logits), -1, 1)).squeeze(2).sum(1)


def ogm_coefficients(scores: torch.Tensor, alpha: float, ratio_others: str = "sum") -> torch.Tensor:
    """Eq. 10 of OGM-GE: ``1 - tanh(alpha * rho)`` for the dominant modality if rho > 1, else 1.

    ``rho = s_u / sum_{k != u} s_k`` (``ratio_others="sum"``) or ``/ mean`` (``"mean"``) with
    u = argmax s (first on ties). Returns (M,) coefficients.
    """
    scores = scores.detach().double()
    u = int(torch.argmax(scores))
    others = torch.cat([scores[:u], scores[u + 1 :]])
    denom = others.sum() if ratio_others == "sum" else others.mean()
    rho = float(scores[u] / denom)
    coeff = torch.ones(len(scores), dtype=torch.float64)
    if rho > 1:
        coeff[u] = 1 - math.tanh(alpha * max(rho, 0.0))
    return coeff


def modulate_gradients(params: list[nn.Parameter], coeff: float, noise: bool) -> None:
    """``g <- g * coeff (+ N(0, (std(g) + 1e-8)^2) if noise)`` for every parameter with a gradient."""
    for p in params:
        if p.grad is None:
            continue
        g = p.grad
        new = g * coeff
        if noise:
            std = float(g.std()) if g.numel() > 1 else 0.0
            new = new + torch.randn_like(g) * (std + 1e-8)
        p.grad = new


@METHODS.register("ogm_ge")
class OGMGE(FusionMethod):
    """Concat fusion with OGM-GE's per-batch encoder-gradient modulation."""

    defaults = option_defaults(CATALOG)
    choices = {"modulated_params": ("all", "4d"), "ratio_others": ("sum", "mean")}

    def __init__(self, encoders: nn.ModuleDict, n_classes: int, feature_dim: int, **options) -> None:
        super().__init__(encoders, n_classes, feature_dim, **options)
        for key, valid in self.choices.items():
            if self.options[key] not in valid:
                raise ValueError(f"method ogm_ge: option {key}={self.options[key]!r}; valid: {', '.join(valid)}")
        self.head = nn.Linear(len(self.modalities) * feature_dim, n_classes)
        self.register_buffer("epoch", torch.tensor(-1, dtype=torch.long))
        self.last_coefficients: dict[str, float] = {}

    def epoch_batches(self, data: SplitTensors, batch_size: int, gen: torch.Generator) -> Iterator[dict]:
        """The default shuffled pass; counts the epoch (0 for the first call)."""
        self.epoch += 1
        return super().epoch_batches(data, batch_size, gen)

    def current_epoch(self) -> int:
        return max(int(self.epoch), 0)

    def in_window(self) -> bool:
        """``modulation_starts <= epoch <= modulation_ends`` (inclusive, as in both codes)."""
        return self.options["modulation_starts"] <= self.current_epoch() <= self.options["modulation_ends"]

    def fuse(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(torch.cat([feats[m] for m in self.modalities], dim=1))

    def modulated_parameters(self, m: str) -> list[nn.Parameter]:
        params = list(self.encoders[m].parameters())
        if self.options["modulated_params"] == "4d":
            params = [p for p in params if p.dim() == 4]
        return params

    def coefficients(self, feats: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """Per-modality k_m from the head's per-modality slices (weight slice + bias / M)."""
        n = len(self.modalities)
        logits = [subhead_logits(self.head, feats[m], i, n) for i, m in enumerate(self.modalities)]
        return ogm_coefficients(true_class_scores(logits, labels), float(self.options["alpha"]),
                                self.options["ratio_others"])

    def train_step(self, batch: dict, optimizer: torch.optim.Optimizer) -> float:
        feats = self.features(batch)
        loss = cross_entropy(self.fuse(feats), batch["label"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        coeff = self.coefficients(feats, batch["label"])
        self.last_coefficients = {m: float(c) for m, c in zip(self.modalities, coeff)}
        if self.in_window():
            for m, k in self.last_coefficients.items():
                modulate_gradients(self.modulated_parameters(m), k, bool(self.options["gaussian_enhancement"]))
        optimizer.step()
        return float(loss.detach())
