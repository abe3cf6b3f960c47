"""``qmf``: Quality-aware Multimodal Fusion (Zhang et al., ICML 2023).

Sources: github.com/QingyangZhang/QMF (commit fe6c4c6): ``RGBD-scene-recognition/models/QMF.py``
L53-76, ``RGBD-scene-recognition/utils/crl_utils.py`` L19-69 (``History``),
``RGBD-scene-recognition/train_QMF_nyud2.py`` L42, L57-107 (``rank_loss``, ``--lamb``),
``text-image-classification/src/models/late_fusion.py`` L30-39 and
``text-image-classification/train_qmf.py`` L168-267; the MLA authors' copy, called [C] below
(github.com/Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-Adaptation, commit ab6c184):
``main.py`` L108-125 (``rank_loss``) and L239-268 (``base`` path), ``utils/utils.py`` L44-94
(``History``). docs/methods/baselines.md has the equations and every option's provenance.

Model: each modality m has its own head ``Linear(s, C)`` giving unimodal logits ``l_m``.

- Energy confidence ``c_m = logsumexp(l_m) / T`` with T = 10 (QMF ``late_fusion.py`` L30-34,
  ``QMF.py`` L67-71 as ``-0.1 * energy``; [C] L242-246).
- Fused logits ``sum_m c_m.detach() * l_m`` (detached as in ``late_fusion.py`` L39 and [C]
  L249; QMF's RGB-D model does not detach).
- History (QMF's ``History``): per training sample and modality, the **cumulative
  per-sample cross-entropy** of that modality's head (``correctness_update`` is called with
  the detached per-sample loss, so "correctness" is a running loss sum, higher = worse).
  It is updated with the current batch **before** the rank loss is computed, as in [C]
  (L258-262) and QMF's text-image script (L258-263); QMF's RGB-D script does it after.
- Ranking targets for the pairs (i, pi(i)), pi(i) = (i + 1) mod B (``torch.roll(-1)``):
  n = min-max normalisation of the history over **all** training samples (``History.
  correctness_normalize``), ``t_i = sign(n_i - n_pi(i))``, margin ``d_i = |n_i - n_pi(i)|``.
  If the whole history is constant (max = min; QMF would divide by zero) n = 0, so every
  target and margin is 0.
- Rank loss, QMF's ``MarginRankingLoss(margin=0)(c, roll(c) + d / t_nonzero, -t)`` written
  out: ``mean_i relu(t_i (c_i - c_pi(i)) - d_i)`` -- a sample with larger cumulative loss
  (t = +1) is penalised when its confidence exceeds its partner's by more than d. The
  confidence is **not** detached here, so the rank loss trains heads and encoders.
- Loss: ``CE(fused) + sum_m CE(l_m) + lambda * sum_m rank_m`` ([C] ``base`` path L268;
  QMF RGB-D L107 with ``clf_loss`` including the fused term). [C]'s ``m3ae`` path drops the
  fused term and the lambda (``main.py`` L170-229: ``loss = torch.mean(clf_loss + crl_loss)``); we follow the ``base`` path for every dataset.

Hyper-parameters: ``temperature = 10`` (every QMF copy), ``lam = 0.1`` ([C] L268; QMF
``--lamb`` default 0.1, ``train_QMF_nyud2.py`` L42).

History storage: buffer ``history`` (M, N) float64, so checkpoints carry it. N is the
training-set size, taken from ``len(data)`` when ``epoch_batches`` is called (QMF sizes its
``History`` with ``len(train_loader.dataset)``) and grown if a batch carries a larger
``index``; unseen samples hold 0, as in QMF's zero-initialised arrays. Loading a state dict
resizes the buffer to the stored one.

Per-modality predictor (the MLA paper, Zhang et al., CVPR 2024, §4.1.1): the other modalities are deactivated -- their encoder
outputs zeroed -- and the fused network (unimodal heads, energy weights, weighted sum) is
evaluated; a deactivated modality still contributes ``c(b_k) * b_k`` from its head bias k.
Missing modalities: inputs zeroed by the batch, as in [C] (which zeroes masked inputs on its
QMF path); absent samples still enter their modality's CE, history and rank loss.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch import nn
from torch.nn import functional as F

from mla.batches import SplitTensors
from mla.methods.base import METHODS, cross_entropy
from mla.methods.common import FusionMethod
from mla.catalog import option_defaults

# Grid facts and options, read without importing this file (mla/catalog.py); `defaults` below come from it.
CATALOG = {
    "per_modality": False,
    "modality_counts": [2, 3],
    "reuses": None,
    "options": {"temperature": {"default": 10.0}, "lam": {"default": 0.1}},
}


def energy_confidence(logits: torch.Tensor, temperature: float = 10.0) -> torch.Tensor:
    """QMF's confidence ``logsumexp(logits) / T`` (minus the energy over T), (B,)."""
    return torch.logsumexp(logits, dim=1) / temperature


def normalise_history(history: torch.Tensor) -> torch.Tensor:
    """Min-max normalisation over all samples; a constant history maps to zeros."""
    lo, hi = history.min(), history.max()
    if hi <= lo:
        return torch.zeros_like(history)
    return (history - lo) / (hi - lo)


def ranking_targets(history: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets ``sign(n_i - n_{i+1})`` and margins ``|n_i - n_{i+1}|`` for the rolled pairs.

    ``history`` is one modality's (N,) cumulative loss, ``index`` the batch's sample indices;
    pair i is (index[i], index[(i + 1) mod B]).
    """
    n = normalise_history(history)
    n1 = n[index]
    n2 = n[torch.roll(index, -1)]
    return torch.sign(n1 - n2), (n1 - n2).abs()


def rank_loss(confidence: torch.Tensor, target: torch.Tensor, margin: torch.Tensor) -> torch.Tensor:
    """``mean_i relu(t_i (c_i - c_{i+1}) - d_i)``, QMF's margin ranking loss written out."""
    c1, c2 = confidence, torch.roll(confidence, -1)
    return F.relu(target.to(c1.dtype) * (c1 - c2) - margin.to(c1.dtype)).mean()


@METHODS.register("qmf")
class QMF(FusionMethod):
    """Unimodal heads, energy-weighted late fusion, history-based confidence ranking."""

    defaults = option_defaults(CATALOG)

    def __init__(self, encoders: nn.ModuleDict, n_classes: int, feature_dim: int, **options) -> None:
        super().__init__(encoders, n_classes, feature_dim, **options)
        if not float(self.options["temperature"]) > 0:
            raise ValueError(f"method qmf: temperature must be > 0, got {self.options['temperature']!r}")
        self.heads = nn.ModuleDict({m: nn.Linear(feature_dim, n_classes) for m in self.modalities})
        self.register_buffer("history", torch.zeros(len(self.modalities), 0, dtype=torch.float64))

    # --- history buffer ------------------------------------------------------------------
    def ensure_history(self, n: int) -> None:
        """Grow the history to at least ``n`` samples (new samples start at 0)."""
        if n > self.history.shape[1]:
            grown = self.history.new_zeros(len(self.modalities), n)
            grown[:, : self.history.shape[1]] = self.history
            self.history = grown

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        stored = state_dict.get(prefix + "history")
        if stored is not None and stored.shape != self.history.shape:
            self.history = self.history.new_zeros(stored.shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def epoch_batches(self, data: SplitTensors, batch_size: int, gen: torch.Generator) -> Iterator[dict]:
        """The default shuffled pass; sizes the history to the training set."""
        self.ensure_history(len(data))
        return super().epoch_batches(data, batch_size, gen)

    # --- model ---------------------------------------------------------------------------
    def unimodal_heads(self, feats: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        return [self.heads[m](feats[m]) for m in self.modalities]

    def combine(self, logits: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Fused logits ``sum_m c_m.detach() * l_m`` and the (attached) confidences c_m."""
        conf = [energy_confidence(lg, float(self.options["temperature"])) for lg in logits]
        fused = torch.stack([c.detach().unsqueeze(1) * lg for c, lg in zip(conf, logits)]).sum(0)
        return fused, conf

    def fuse(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.combine(self.unimodal_heads(feats))[0]

    def train_step(self, batch: dict, optimizer: torch.optim.Optimizer) -> float:
        labels, index = batch["label"], batch["index"].to(self.history.device)
        logits = self.unimodal_heads(self.features(batch))
        fused, conf = self.combine(logits)
        self.ensure_history(int(index.max()) + 1)
        rank = []
        for i, (lg, c) in enumerate(zip(logits, conf)):
            per_sample = F.cross_entropy(lg.detach(), labels, reduction="none")
            self.history[i].index_add_(0, index, per_sample.to(self.history.dtype))
            target, margin = ranking_targets(self.history[i], index)
            rank.append(rank_loss(c, target, margin))
        loss = (cross_entropy(fused, labels) + sum(cross_entropy(lg, labels) for lg in logits)
                + float(self.options["lam"]) * sum(rank))
        return self.optimise(loss, optimizer)
