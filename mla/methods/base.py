"""The method API shared by every training method.

``create_method(name, encoders, n_classes=..., feature_dim=..., **options)`` returns a
:class:`Method`: an ``nn.Module`` owning the encoders and heads, with

- ``train_step(batch, optimizer) -> float``: one optimisation step, returns the loss;
- ``predict(batch) -> dict[str, Tensor]``: logits under key ``"multi"`` (the fused
  prediction), under each modality name (that modality's unimodal prediction as the paper
  defines it for this method) and, for methods with per-modality predictors, under
  ``"multi:<fusion>"`` for every test-time fusion rule;
- ``embed(batch) -> dict[str, Tensor]``: each modality's encoder features (B, s);
- ``epoch_batches(data, batch_size, gen)``: the batches of one epoch (default: one shuffled
  pass of paired batches);
- ``state_dict()``: everything needed to resume or score it (method state such as MLA's ``P``
  lives in buffers).

Adding a method is one registered file in ``mla/methods/``; unknown options are errors.
"""
from __future__ import annotations

from typing import Any, Iterator

import torch
from torch import nn
from torch.nn import functional as F

from mla.batches import SplitTensors, shuffled_batches
from mla.registry import Registry

METHODS = Registry("method")


class Method(nn.Module):
    """Base class; subclasses set ``defaults`` (their options) and implement the API."""

    defaults: dict[str, Any] = {}
    modality_counts: tuple[int, ...] = (2, 3)

    def __init__(self, encoders: nn.ModuleDict, n_classes: int, feature_dim: int, **options: Any) -> None:
        super().__init__()
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise ValueError(
                f"method {type(self).__name__}: unknown option(s) {', '.join(unknown)}; "
                f"valid options: {', '.join(sorted(self.defaults)) or '(none)'}"
            )
        if len(encoders) not in self.modality_counts:
            raise ValueError(
                f"method {type(self).__name__} supports {self.modality_counts} modalities, got {len(encoders)}"
            )
        self.options = {**self.defaults, **options}
        self.encoders = encoders
        self.modalities = tuple(encoders.keys())
        self.n_classes = n_classes
        self.feature_dim = feature_dim

    def embed(self, batch: dict) -> dict[str, torch.Tensor]:
        """Each modality's features, (B, s)."""
        return {m: self.encoders[m](batch[m]) for m in self.modalities}

    def epoch_batches(self, data: SplitTensors, batch_size: int, gen: torch.Generator) -> Iterator[dict]:
        """Default: one shuffled pass of paired batches."""
        return shuffled_batches(data, batch_size, gen)

    @staticmethod
    def optimise(loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> float:
        """Plain step: clear gradients (to None), backpropagate, step."""
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    def train_step(self, batch: dict, optimizer: torch.optim.Optimizer) -> float:
        raise NotImplementedError

    def predict(self, batch: dict) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    #: False: ``predict`` may leave out the per-modality keys and return the fused ones only (``multi``,
    #: ``multi:<fusion>``). The training loop sets it for runs whose per-modality accuracies no table or
    #: claim reads (Table 2's missing phase), where a baseline that predicts a modality alone by running
    #: its model once more (the frozen-feature baselines) would spend most of its scoring on them.
    score_modalities: bool = True


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The loss of every method: plain cross-entropy, as in [C]."""
    return F.cross_entropy(logits, labels)


def create_method(name: str, encoders: nn.ModuleDict, **cfg: Any) -> Method:
    """Build the registered method ``name`` around ``encoders`` (importing all methods)."""
    import mla.methods  # noqa: F401  (registers the built-in methods)

    return METHODS.create(name, encoders, **cfg)
