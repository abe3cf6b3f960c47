"""Reading third-party checkpoints without executing them, and without letting them allocate at will.

- torch ``.pth`` / ``.pt`` zip files: first :func:`mla.weights.declared.declared_state` reads the
  pickle alone, with the restricted unpickler below, and checks every tensor against the bytes the
  file really holds (so a small file cannot declare a huge tensor); callers check those declared
  shapes against what they expect; only then ``torch.load(weights_only=True)`` reads the tensors.
- other pickles (the Flax parameter trees of M3AE): :class:`RestrictedUnpickler`, which resolves
  ONLY numpy's array/dtype/scalar reconstruction and a few plain container types. Any other global
  (a class, a function such as ``os.system``, a flax ``TrainState``, a cloudpickled closure,
  ``bytearray``) stops the load with :class:`UnsafeCheckpointError` naming it as ``module.qualname``,
  before anything is constructed or called. Nothing it admits can allocate more than the file holds:
  the pickle is read through a reader that never hands out more than the file's remaining bytes
  (the C unpickler would allocate a declared length up front), arrays are rebuilt only from their
  own bytes, and object arrays are refused.
- a legacy (pre-zip, PyTorch < 1.6) ``torch.save`` file is refused with a message saying how to
  re-save it in the zip format.

No message here suggests loading with ``weights_only=False``.
"""
from __future__ import annotations

import _compat_pickle
import codecs
import collections
import math
import os
import pickle
import re
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

try:  # numpy >= 2 keeps the implementation in numpy._core; pickles name either path
    from numpy._core import multiarray as _multiarray, numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray, numeric as _numeric

# The first pickle of a legacy torch.save file is this number (torch/serialization.py MAGIC_NUMBER).
LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_HINT = (
    "a legacy torch.save file (PyTorch < 1.6, not a zip archive), which is not read here; re-save it once "
    "in the zip format with a current PyTorch: torch.save(torch.load(old, map_location='cpu', "
    "weights_only=True), new), then use the new file")


class UnsafeCheckpointError(ValueError):
    """A checkpoint asks for something other than plain data; the message names it and the file."""


class _NdarrayType:
    """Stands for ``numpy.ndarray`` in a pickle: usable by ``_reconstruct``, never callable, so a pickle
    cannot call ``ndarray(shape)`` to allocate an array of any size."""


_NDARRAY = _NdarrayType()


def _latin1(text: str, encoding: str) -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes payloads, and nothing else."""
    if encoding != "latin1" or not isinstance(text, str):
        raise UnsafeCheckpointError(f"_codecs.encode called with {encoding!r}; only latin1 text is allowed")
    return codecs.encode(text, "latin1")


def _dtype(*args: Any) -> np.dtype:
    """``numpy.dtype`` without object fields (an object array's size is not bounded by its bytes)."""
    dt = np.dtype(*args)
    if dt.hasobject:
        raise UnsafeCheckpointError(f"refusing the numpy object dtype {dt}: only numeric arrays are read")
    return dt


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """``numpy..._reconstruct`` as pickled arrays use it: an EMPTY ndarray that BUILD then fills."""
    if subtype is not _NDARRAY or math.prod(_ints(shape, "shape")) != 0:
        raise UnsafeCheckpointError(f"refusing _reconstruct({subtype!r}, {shape!r}): pickled arrays start empty")
    return _multiarray._reconstruct(np.ndarray, shape, dtype)


def _ints(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(isinstance(v, int) and v >= 0 for v in value):
        raise UnsafeCheckpointError(f"{what} {value!r} is not a tuple of non-negative integers")
    return tuple(value)


ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _dtype,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("_codecs", "encode"): _latin1,
}
for _mod in ("numpy.core", "numpy._core"):
    ALLOWED[(f"{_mod}.multiarray", "_reconstruct")] = _reconstruct
    ALLOWED[(f"{_mod}.multiarray", "scalar")] = _multiarray.scalar
    ALLOWED[(f"{_mod}.numeric", "_frombuffer")] = _numeric._frombuffer

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


class BoundedReader:
    """A binary file that never returns more than ``limit`` bytes in all: asking for more gets what is
    left, so a length field in the pickle cannot make the reader allocate beyond the file."""

    def __init__(self, fh: Any, limit: int) -> None:
        self.fh, self.left = fh, limit

    def read(self, n: int = -1) -> bytes:
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self.fh.read(n)
        self.left -= len(data)
        return data

    def readline(self) -> bytes:
        data = self.fh.readline(self.left)
        self.left -= len(data)
        return data


class RestrictedUnpickler(pickle._Unpickler):  # the Python unpickler: its reads go through BoundedReader
    """Unpickler that resolves only numpy array reconstruction and plain containers."""

    dispatch = dict(pickle._Unpickler.dispatch)
    admits = "numpy arrays, plain containers and scalars"

    def __init__(self, file: Any, source: str, size: int) -> None:
        super().__init__(BoundedReader(file, size))
        self.source = source
        self.size = size

    def allowed(self, module: str, name: str) -> Any:
        """The object a global stands for, or KeyError."""
        return ALLOWED[(module, name)]

    def find_class(self, module: str, name: str) -> Any:
        # Protocol-2 pickles written by Python 3 carry Python 2 names (``__builtin__.set``).
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        try:
            return self.allowed(module, name)
        except KeyError:
            jax_like = module.split(".")[0] in ("flax", "optax", "jax", "jaxlib", "m3ae", "cloudpickle")
            hint = M3AE_HINT if jax_like else ""
            raise UnsafeCheckpointError(
                f"{self.source}: refusing to unpickle {module}.{name}: only {self.admits} are allowed.{hint}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise _PersistentId()

    def _load_build(self) -> None:
        """BUILD only on numpy dtypes and arrays (checked so an array never exceeds its own bytes) and on a
        state_dict OrderedDict's ``_metadata``."""
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, collections.OrderedDict) and isinstance(state, dict) and set(state) <= {"_metadata"}:
            # torch.save(module.state_dict()): an OrderedDict carrying each submodule's version numbers
            meta = state.get("_metadata", {})
            if not isinstance(meta, dict) or not all(isinstance(v, dict) for v in meta.values()):
                raise UnsafeCheckpointError(f"{self.source}: unexpected state_dict metadata")
            inst.__dict__.update(state)
            return
        if isinstance(inst, np.ndarray):
            _check_array_state(state, self.source)
        elif not isinstance(inst, np.dtype):
            raise UnsafeCheckpointError(f"{self.source}: refusing to set the state of a {type(inst).__name__}")
        inst.__setstate__(state)
        if isinstance(inst, np.dtype) and inst.hasobject:
            raise UnsafeCheckpointError(f"{self.source}: refusing a numpy object dtype")

    def _load_bytearray8(self) -> None:
        (n,) = struct.unpack("<Q", self.read(8))
        if n > self.size:
            raise UnsafeCheckpointError(f"{self.source}: a bytearray of {n} bytes in a file of {self.size}")
        data = self.read(n)
        if len(data) != n:
            raise UnsafeCheckpointError(f"{self.source}: pickle data was truncated")
        self.append(bytearray(data))

    dispatch[pickle.BUILD[0]] = _load_build
    dispatch[pickle.BYTEARRAY8[0]] = _load_bytearray8


def _check_array_state(state: Any, source: str) -> None:
    """An ndarray's pickled state must hold exactly its own bytes, numeric dtype."""
    if isinstance(state, tuple) and len(state) == 5:
        state = state[1:]
    if not (isinstance(state, tuple) and len(state) == 4):
        raise UnsafeCheckpointError(f"{source}: malformed numpy array state")
    shape, dtype, _fortran, raw = state
    shape = _ints(shape, f"{source}: array shape")
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafeCheckpointError(f"{source}: refusing a numpy array of dtype {dtype!r}: only numeric arrays")
    if not isinstance(raw, (bytes, bytearray)) or len(raw) != math.prod(shape) * dtype.itemsize:
        got = len(raw) if isinstance(raw, (bytes, bytearray)) else type(raw).__name__
        raise UnsafeCheckpointError(f"{source}: a numpy array of shape {shape} and dtype {dtype} comes with "
                                    f"{got} bytes, not {math.prod(shape) * dtype.itemsize}")


def unpickle(fh: Any, source: str, size: int, unpickler: type[RestrictedUnpickler] = RestrictedUnpickler) -> Any:
    """One pickle from ``fh`` (at most ``size`` bytes) with ``unpickler``; errors name ``source``."""
    try:
        return unpickler(fh, source, size).load()
    except UnsafeCheckpointError as exc:
        if str(exc).startswith(source):
            raise
        raise UnsafeCheckpointError(f"{source}: {exc}") from None  # refused inside an admitted function
    except _PersistentId:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, struct.error, IndexError, KeyError,
            AttributeError, OverflowError, MemoryError, UnicodeDecodeError) as exc:
        raise UnsafeCheckpointError(f"{source}: not a readable pickle of plain data: "
                                    f"{type(exc).__name__}: {exc}") from None


def load_restricted_pickle(path: str | Path) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`; a legacy torch file is refused."""
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        try:
            obj = unpickle(fh, str(path), size)
        except _PersistentId:
            obj = LEGACY_TORCH_MAGIC  # a persistent id outside a torch zip: the legacy layout
    if isinstance(obj, int) and not isinstance(obj, bool) and obj == LEGACY_TORCH_MAGIC:
        raise UnsafeCheckpointError(f"{path}: {LEGACY_HINT}")
    return obj


def torch_load(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU, its refusals reworded (no advice to lift the guard).

    Call it after :func:`mla.weights.declared.declared_state` has checked the file.
    """
    safe = [_multiarray.scalar, np.dtype, *{type(np.dtype(t)) for t in "?bhilqBHILQefdg"}]
    try:
        with torch.serialization.safe_globals(safe):
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError) as exc:
        raise UnsafeCheckpointError(f"{path}: torch.load(weights_only=True) refused it: {torch_refusal(exc)}") from None


def torch_refusal(exc: BaseException) -> str:
    """The useful part of a torch.load error: the global it refused, else its first line, never its advice."""
    text = str(exc)
    m = re.search(r"Unsupported (?:global|operand)[^\n]*", text)
    if m:
        return m.group(0).split(" was not an allowed global")[0].rstrip(" .")
    lines = [ln for ln in text.splitlines() if ln.strip() and "weights_only" not in ln and "trust" not in ln]
    return lines[0].strip() if lines else type(exc).__name__


def load_torch(path: str | Path) -> Any:
    """A torch zip file: declared tensors checked against the file (no allocation), then read."""
    from mla.weights.declared import declared_state  # declared imports this module

    declared_state(path)
    return torch_load(path)


def read_checkpoint(path: str | Path) -> Any:
    """A checkpoint's content, never executing code: zip -> torch weights_only, else restricted pickle."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path}: no such file")
    if zipfile.is_zipfile(path):
        return load_torch(path)
    return load_restricted_pickle(path)


def require_finite(state: dict[str, torch.Tensor], source: str) -> None:
    """Every floating tensor of ``state`` finite; the error names the first one that is not."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and tensor.device.type != "meta" and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise UnsafeCheckpointError(f"{source}: tensor {name!r} holds {bad} NaN or infinite value(s); "
                                        f"the file is damaged or the run it comes from diverged")

