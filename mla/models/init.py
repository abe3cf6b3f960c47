"""Weight initialisation of a built method (``model.init``): PyTorch's defaults, or the released code's.

``released`` is the ``weight_init`` function of the released MLA code, which it copied from OGM-GE
(Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-Adaptation @ ab6c184, utils/utils.py
L106-114; GeWu-Lab/OGM-GE_CVPR2022 @ 343dc1d, utils/utils.py L15-23), applied the way both
main.py files apply it: ``model.apply(weight_init)`` on the whole classifier (encoders, fusion
head, QMF's unimodal heads) once it is built, so after the ResNet's own initialisation, which it
overwrites. Per module, in ``nn.Module.apply``'s order (children first):

- ``nn.Linear``: Xavier-normal weight, bias 0;
- ``nn.Conv2d``: Kaiming-normal weight, ``mode="fan_out"``, ReLU gain (the bias, if any, is kept);
- ``nn.BatchNorm2d``: weight 1, bias 0;
- every other module (embeddings, LayerNorm, attention in-projections, ...) is left as built.

The released code runs it on its ``base`` path only (two ResNet-18s from scratch); its pre-trained
M3AE / CAV-MAE paths run no ``weight_init`` at all. Here an encoder loaded from pre-trained
weights (``weights`` in its spec) is never re-initialised; docs/methods/encoders.md says more.
"""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np
import torch
from torch import nn

INITS = ("pytorch", "released")
_STREAM = 0x1A17  # tags the initialisation's random stream, so it shares no numbers with the run's other draws


def init_generator(seed: int) -> torch.Generator:
    """The CPU generator of the initialisation of the run with ``seed``: same seed, same weights."""
    state = np.random.SeedSequence([seed, _STREAM]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state >> 1))


def released_init_(module: nn.Module, generator: torch.Generator) -> None:
    """The released ``weight_init`` on one module (not its children), drawing from ``generator``."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_normal_(module.weight, generator=generator)
        if module.bias is not None:
            nn.init.constant_(module.bias, 0.0)
    elif isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu", generator=generator)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.constant_(module.weight, 1.0)
        nn.init.constant_(module.bias, 0.0)


def _children_first(module: nn.Module, keep: set[int]) -> Iterator[nn.Module]:
    """``module`` and its descendants in ``nn.Module.apply``'s order, skipping the subtrees in ``keep``."""
    if id(module) in keep:
        return
    for child in module.children():
        yield from _children_first(child, keep)
    yield module


@torch.no_grad()
def initialise(method: nn.Module, init: str, seed: int, keep: Iterable[nn.Module] = ()) -> None:
    """Apply ``model.init`` to a freshly built ``method`` in place.

    ``pytorch`` changes nothing (and draws no random numbers). ``released`` applies the released
    ``weight_init`` to every module except those in ``keep`` (the pre-trained encoders) and their
    descendants, drawing from :func:`init_generator` ``(seed)``.
    """
    if init not in INITS:
        raise ValueError(f"model.init {init!r}: expected one of {', '.join(INITS)}")
    if init == "pytorch":
        return
    generator = init_generator(seed)
    for module in _children_first(method, {id(m) for m in keep}):
        released_init_(module, generator)
