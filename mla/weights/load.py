"""Loading converted weights (``python -m mla convert-weights`` output) into our modules.

Only ``torch.load(weights_only=True)`` files of plain tensors are read. Unlike [C]'s non-strict
``load_state_dict`` from placeholder paths (``models/basic_model.py`` L166-173, L234-242), every
parameter and buffer the module has must be in the file with its shape, and every entry of the file
must be used (or be one the module declares as another modality's, ``foreign_weights``); errors name
the file and the entry.
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from mla.weights.declared import declared_state
from mla.weights.safe_load import require_finite, torch_load


class WeightsError(ValueError):
    """A weights file that does not fit its module; the message names the file and the entry."""


def read_state(path: str | Path, check: Callable[[dict[str, torch.Tensor]], None] | None = None
               ) -> dict[str, torch.Tensor]:
    """A converted state dict: a dict of finite tensors, read with ``weights_only=True``.

    ``check`` first receives the DECLARED state (``meta`` tensors of the file's shapes, nothing
    allocated; :mod:`mla.weights.declared`) and raises if it does not fit the module."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist (write it with `python -m mla convert-weights`, "
                                f"or remove the encoder's `weights` option to train from scratch)")
    if not zipfile.is_zipfile(path):
        raise WeightsError(f"weights file {path}: not a torch zip file (convert it with `python -m mla convert-weights`)")
    declared = declared_state(path)
    _require_tensor_dict(declared, path)
    if check is not None:
        check(declared)
    state = torch_load(path)
    _require_tensor_dict(state, path)
    require_finite(state, f"weights file {path}")
    return state


def _require_tensor_dict(state: object, path: Path) -> None:
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"weights file {path}: not a dict of tensors "
                           f"(convert it with `python -m mla convert-weights`)")


def check_state(module: nn.Module, state: dict[str, torch.Tensor], source: str,
                ignore: tuple[str, ...] = (), optional: tuple[str, ...] = ()) -> None:
    """Every entry of ``module.state_dict()`` in ``state`` with its shape, and nothing unknown.

    ``ignore``: entries of ``state`` that may be left unused; ``optional``: module entries that may
    be absent (they keep their current values).
    """
    expected = module.state_dict()
    for name, value in expected.items():
        if name not in state:
            if name in optional:
                continue
            raise WeightsError(f"weights file {source}: missing parameter {name!r}")
        if tuple(state[name].shape) != tuple(value.shape):
            raise WeightsError(f"weights file {source}: parameter {name!r} has shape {tuple(state[name].shape)}, "
                               f"expected {tuple(value.shape)}")
    unknown = sorted(k for k in state if k not in expected and k not in ignore)
    if unknown:
        raise WeightsError(f"weights file {source}: unexpected parameter(s) {', '.join(unknown[:5])}"
                           f"{' ...' if len(unknown) > 5 else ''} for {type(module).__name__}")


def load_encoder_weights(encoder: nn.Module, path: str | Path, prefix: str = "") -> None:
    """Load converted weights into ``encoder``; ``prefix`` picks one encoder of a method's state dict."""
    foreign = tuple(getattr(encoder, "foreign_weights", ()))

    def select(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if prefix:
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if not state:
                raise WeightsError(f"weights file {path}: no entries start with {prefix!r}")
        check_state(encoder, state, str(path), ignore=foreign)
        return state

    state = select(read_state(path, check=select))
    encoder.load_state_dict({k: v for k, v in state.items() if k in encoder.state_dict()})


def load_method_state(method: nn.Module, path: str | Path) -> None:
    """Load a ``--kind released`` file (encoders + head) into a built ``mla`` / ``mla_released``.

    Method state outside the encoders and the head (``mla``'s ``P``, ``step``, ...) is not in the
    file and keeps its initial value; everything under ``encoders.`` and ``head.`` must be there,
    with the shapes the config and the dataset give (checked before the file's tensors are read).
    """
    own = tuple(k for k in method.state_dict() if not k.startswith(("encoders.", "head.")))
    state = read_state(path, check=lambda declared: check_state(method, declared, str(path), optional=own))
    method.load_state_dict(state, strict=False)
