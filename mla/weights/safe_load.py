"""Reading third-party checkpoints without executing them.

- torch ``.pth`` / ``.pt`` zip files: ``torch.load(weights_only=True)`` only (tensors, plain
  containers, numbers, strings; torch's own allow-list), plus numpy scalars (data only).
- other pickles (the Flax parameter trees of M3AE): :class:`RestrictedUnpickler`, which resolves
  ONLY numpy's array/dtype/scalar reconstruction functions and a few plain container types.
  Any other global (a class, a function such as ``os.system``, a flax ``TrainState``, a
  cloudpickled closure) stops the load with :class:`UnsafeCheckpointError` naming it as
  ``module.qualname``, before anything is constructed or called. A legacy (pre-zip) torch file,
  recognised by its persistent ids, is handed to ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import _compat_pickle
import codecs
import collections
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

try:  # numpy >= 2 keeps the implementation in numpy._core; pickles name either path
    from numpy._core import multiarray as _multiarray, numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray, numeric as _numeric


class UnsafeCheckpointError(ValueError):
    """A checkpoint asks for something other than plain data; the message names it and the file."""


def _latin1(text: str, encoding: str) -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes payloads, and nothing else."""
    if encoding != "latin1" or not isinstance(text, str):
        raise UnsafeCheckpointError(f"_codecs.encode called with {encoding!r}; only latin1 text is allowed")
    return codecs.encode(text, "latin1")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytearray"): bytearray,
    ("builtins", "complex"): complex,
    ("_codecs", "encode"): _latin1,
}
for _mod in ("numpy.core", "numpy._core"):
    _ALLOWED[(f"{_mod}.multiarray", "_reconstruct")] = _multiarray._reconstruct
    _ALLOWED[(f"{_mod}.multiarray", "scalar")] = _multiarray.scalar
    _ALLOWED[(f"{_mod}.numeric", "_frombuffer")] = _numeric._frombuffer

# What flax/optax/cloudpickle objects mean when they show up: the official M3AE checkpoint.
M3AE_HINT = (
    " The official M3AE checkpoint pickles a flax TrainState with cloudpickled optimiser functions, which "
    "is never unpickled here. Extract its parameters once, where you trust that file and have M3AE's code: "
    "ckpt = pickle.load(open('m3ae_base.pkl', 'rb')); params = jax.tree_util.tree_map(numpy.asarray, "
    "flax.core.unfreeze(ckpt['state'].params)); pickle.dump(params, open('m3ae_base_params.pkl', 'wb')); "
    "then convert m3ae_base_params.pkl (plain dicts of numpy arrays)."
)


class _PersistentId(Exception):
    """A persistent id: the pickle is a legacy torch.save file, not a plain pickle."""


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy array reconstruction and plain containers."""

    def __init__(self, file, source: str) -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        # Protocol-2 pickles written by Python 3 carry Python 2 names (``__builtin__.set``).
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            jax_like = module.split(".")[0] in ("flax", "optax", "jax", "jaxlib", "m3ae", "cloudpickle")
            hint = M3AE_HINT if jax_like else ""
            raise UnsafeCheckpointError(
                f"{self.source}: refusing to unpickle {module}.{name}: only numpy arrays, plain containers and "
                f"scalars are allowed.{hint}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise _PersistentId()


def load_restricted_pickle(path: str | Path) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`."""
    with open(path, "rb") as fh:
        return RestrictedUnpickler(fh, str(path)).load()


def load_torch(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU; a refused global is an :class:`UnsafeCheckpointError`."""
    safe = [_multiarray.scalar, np.dtype, *{type(np.dtype(t)) for t in "?bhilqBHILQefdg"}]
    try:
        with torch.serialization.safe_globals(safe):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(f"{path}: torch.load(weights_only=True) refused it: {exc}") from None


def read_checkpoint(path: str | Path) -> Any:
    """A checkpoint's content, never executing code: zip -> torch weights_only, else restricted pickle."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path}: no such file")
    if zipfile.is_zipfile(path):
        return load_torch(path)
    try:
        return load_restricted_pickle(path)
    except _PersistentId:
        return load_torch(path)  # legacy torch.save format: torch's own restricted loader
    except (pickle.UnpicklingError, EOFError) as exc:
        raise UnsafeCheckpointError(f"{path}: not a readable pickle: {exc}") from None
