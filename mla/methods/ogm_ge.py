"""``ogm_ge``: On-the-fly Gradient Modulation with Generalization Enhancement (Peng et al., CVPR 2022).

Source: OGM-GE's official code, github.com/GeWu-Lab/OGM-GE_CVPR2022 at commit 343dc1d
(``main.py`` ``train_epoch``, L57-161; README L128-151). The MLA code
(github.com/Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-Adaptation, commit ab6c184,
called [C] below) carries a copy in ``main.py`` L312-410. docs/methods/baselines.md has the
equations and the provenance of every option.

Model and loss: concatenation fusion, ``Linear(M s, C)`` on ``[h_1; ...; h_M]``, trained with
cross-entropy on the fused logits only (OGM-GE ``main.py`` L80, L95, L98).

Once per batch, after ``backward`` and before ``optimizer.step()`` (OGM-GE L98-153):

1. Each modality's logits are its slice of the concat head plus ``b / M`` (OGM-GE L88-93:
   ``bias / 2``), :func:`mla.methods.concat.subhead_logits`.
2. Scores ``s_m = sum_i softmax(logits_m)_i[y_i]`` over the batch (OGM-GE L105-106).
3. Two modalities (OGM-GE L108-124, the paper's Eq. 10): ``rho_v = s_v / s_a``; if
   ``rho_v > 1`` video gets ``k_v = 1 - tanh(alpha * relu(rho_v))``, **otherwise** audio gets
   ``k_a = 1 - tanh(alpha * relu(1 / rho_v))``; the other coefficient is 1. So exactly one
   modality is modulated on every batch, the argmax of s (audio, the first, on a tie), with
   ``alpha * rho`` (not ``alpha * (rho - 1)``; relu is the identity since rho > 0).
   We state this as: u = argmax_m s_m (first on ties), ``rho = s_u / s_other``, and u is
   modulated when ``rho >= 1``, which for M = 2 always holds.
4. Inside the window ``modulation_starts <= epoch <= modulation_ends`` (inclusive at both
   ends, epochs counted from 0; OGM-GE L132 and L275), every **selected** parameter of
   modality m's encoder gets ``g <- g * k_m + N(0, (std(g) + 1e-8)^2)`` (OGM-GE L136-148:
   ``torch.zeros_like(g).normal_(0, g.std().item() + 1e-8)``; std is torch's unbiased std of
   the *unscaled* gradient, the noise is drawn from torch's default generator, one draw per
   parameter in parameter order). The noise goes to the selected parameters of **every**
   encoder, the non-modulated one (k = 1) included. ``gaussian_enhancement=False`` is OGM
   (``g * k_m`` only, OGM-GE L140-141). The fusion head is never touched.

Which parameters (option ``modulated_params``):
- ``"4d"`` (default, OGM-GE's rule): the encoder parameters whose gradient is 4-D
  (``len(parms.grad.size()) == 4`` with ``'audio'``/``'visual'`` in the module name,
  OGM-GE L133-143), i.e. the convolution kernels. BatchNorm scales/shifts (1-D) and the
  fusion head (2-D, not in an encoder) keep their plain gradients.
- ``"matrices"`` (our choice for transformer encoders): every encoder parameter with at least
  2 dimensions -- convolution kernels, linear and embedding weights, position / class-token
  tables -- and no bias or normalisation vector. On the ResNet-18 encoders it selects exactly
  the ``"4d"`` set (their only parameters of 2+ dimensions are the conv kernels). M3AE and
  the built-in text transformer have no 4-D parameter at all, so ``"4d"`` would leave them
  unmodulated ([C]'s M3AE path selects by the same 4-D test and so never modulates them).
- ``"all"``: every encoder parameter (this project's earlier behaviour; no source).
An encoder in which the rule selects nothing is listed in ``unmodulated`` and announced with a
warning that names the encoder and the option to set, never a silent no-op.

Three modalities (our generalisation; OGM-GE has two): u = argmax s (first on ties),
``rho = s_u / sum_{k != u} s_k`` (``ratio_others="sum"``, [C]'s ratio, ``main.py`` L322-324)
or ``/ mean`` (``"mean"``), u modulated when ``rho >= 1``. [C] (L326-337) instead tests video,
then text, and otherwise modulates audio even when audio's ratio is below 1.

Per-modality predictor (the MLA paper, §4.1.1): the other modalities are deactivated -- their
encoder outputs zeroed -- and the fused head is evaluated, ``W[:, m] h_m + b``; OGM-GE's own
evaluation (L199-203) uses the sub-head with ``b / 2`` (the ``concat`` method's rule).
Missing modalities: inputs zeroed by the batch; the scores sum over the whole batch, absent
samples included.
"""
from __future__ import annotations

import math
import warnings
from typing import Iterator

import torch
from torch import nn

from mla.batches import SplitTensors
from mla.methods.base import METHODS, cross_entropy
from mla.methods.common import FusionMethod
from mla.methods.concat import subhead_logits
from mla.catalog import option_choices, option_defaults

# Grid facts and options, read without importing this file (mla/catalog.py); `defaults` below come from it.
CATALOG = {
    "per_modality": False,
    "modality_counts": [2, 3],
    "reuses": None,
    "options": {
        "alpha": {"default": 0.1},  # OGM-GE README "default modulation setting" (--alpha is required in main.py)
        "modulation_starts": {"default": 0},  # OGM-GE main.py L41
        "modulation_ends": {"default": 50},  # OGM-GE main.py L42
        "gaussian_enhancement": {"default": True},  # OGM_GE (the MLA paper's Table 1 row), not OGM
        "modulated_params": {"default": "4d", "choices": ["4d", "matrices", "all"]},  # 4d: OGM-GE's conv kernels
        "ratio_others": {"default": "sum", "choices": ["sum", "mean"]},
    },
}

# How each ``modulated_params`` choice selects an encoder parameter (by its shape, which is
# its gradient's shape).
SELECTORS = {
    "4d": lambda p: p.dim() == 4,
    "matrices": lambda p: p.dim() >= 2,
    "all": lambda p: True,
}


def true_class_scores(logits: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """``s_m = sum_i softmax(logits_m)_i[y_i]`` for each modality's logits; (M,), detached."""
    probs = torch.stack([torch.softmax(lg.detach(), dim=1) for lg in logits])  # (M, B, C)
    return probs.gather(2, labels.view(1, -1, 1).expand(len(logits), -1, 1)).squeeze(2).sum(1)


def ogm_coefficients(scores: torch.Tensor, alpha: float, ratio_others: str = "sum") -> torch.Tensor:
    """OGM-GE's k_m: ``1 - tanh(alpha * rho)`` for the dominant modality u if rho >= 1, else 1.

    u = argmax s (first on ties); ``rho = s_u / sum_{k != u} s_k`` (``"sum"``) or ``/ mean``
    (``"mean"``). For two modalities this is OGM-GE's if/else (``main.py`` L119-124): exactly
    one modality, the argmax, is modulated. Returns (M,) float64 coefficients.
    """
    scores = scores.detach().double()
    u = int(torch.argmax(scores))  # first maximum on ties: audio in OGM-GE's (audio, visual)
    others = torch.cat([scores[:u], scores[u + 1 :]])
    denom = others.sum() if ratio_others == "sum" else others.mean()
    rho = float(scores[u] / denom)
    coeff = torch.ones(len(scores), dtype=torch.float64)
    if rho >= 1:
        coeff[u] = 1 - math.tanh(alpha * max(rho, 0.0))  # relu(rho), as the code writes it
    return coeff


def modulate_gradients(params: list[nn.Parameter], coeff: float, noise: bool,
                       generator: torch.Generator | None = None) -> None:
    """``g <- g * coeff (+ N(0, (std(g) + 1e-8)^2) if noise)`` for every parameter with a gradient.

    std is torch's (unbiased) std of the unscaled gradient; a one-element gradient has std 0
    (torch's would be NaN). Draws come from ``generator`` (default: torch's global one, as
    OGM-GE's ``normal_``), one per parameter in the given order.
    """
    for p in params:
        if p.grad is None:
            continue
        g = p.grad
        new = g * coeff
        if noise:
            std = float(g.std()) if g.numel() > 1 else 0.0
            new = new + torch.empty_like(g).normal_(0.0, std + 1e-8, generator=generator)
        p.grad = new


@METHODS.register("ogm_ge")
class OGMGE(FusionMethod):
    """Concat fusion with OGM-GE's per-batch encoder-gradient modulation."""

    defaults = option_defaults(CATALOG)
    choices = option_choices(CATALOG)  # modulated_params: SELECTORS' keys

    def __init__(self, encoders: nn.ModuleDict, n_classes: int, feature_dim: int, **options) -> None:
        super().__init__(encoders, n_classes, feature_dim, **options)
        for key, valid in self.choices.items():
            if self.options[key] not in valid:
                raise ValueError(f"method ogm_ge: option {key}={self.options[key]!r}; valid: {', '.join(valid)}")
        rule = self.options["modulated_params"]
        # Encoders the rule leaves untouched (e.g. "4d" on a transformer): OGM-GE would train them
        # as plain concat does, so say so loudly instead of reporting OGM-GE numbers silently.
        self.unmodulated = [m for m in self.modalities if not self.modulated_parameters(m)]
        for m in self.unmodulated:
            warnings.warn(
                f"method ogm_ge: modulated_params={rule!r} selects no parameter of the {m} encoder "
                f"({type(encoders[m]).__name__}), so OGM-GE never modulates it; set "
                f"method_options.ogm_ge.modulated_params (or method_options.ogm_ge.datasets.<dataset>."
                f"modulated_params) to 'matrices' for encoders without convolution kernels", stacklevel=2)
        self.head = nn.Linear(len(self.modalities) * feature_dim, n_classes)
        self.register_buffer("epoch", torch.tensor(-1, dtype=torch.long))
        self.last_coefficients: dict[str, float] = {}

    def epoch_batches(self, data: SplitTensors, batch_size: int, gen: torch.Generator) -> Iterator[dict]:
        """The default shuffled pass; counts the epoch (0 for the first call)."""
        self.epoch += 1
        return super().epoch_batches(data, batch_size, gen)

    def current_epoch(self) -> int:
        """The epoch being trained, from 0 (a step before any ``epoch_batches`` is epoch 0)."""
        return max(int(self.epoch), 0)

    def in_window(self) -> bool:
        """``modulation_starts <= epoch <= modulation_ends`` (inclusive, as OGM-GE L132)."""
        return self.options["modulation_starts"] <= self.current_epoch() <= self.options["modulation_ends"]

    def fuse(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(torch.cat([feats[m] for m in self.modalities], dim=1))

    def modulated_parameters(self, m: str) -> list[nn.Parameter]:
        """The parameters of modality ``m``'s encoder that ``modulated_params`` selects, in order."""
        select = SELECTORS[self.options["modulated_params"]]
        return [p for p in self.encoders[m].parameters() if select(p)]

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
