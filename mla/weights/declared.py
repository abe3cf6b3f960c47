"""What a torch zip checkpoint declares, read without allocating its tensors.

A ``torch.save`` zip holds ``<name>/data.pkl`` (the object tree; each tensor is a call of
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` whose storage is a persistent
id ``('storage', <dtype>Storage, key, location, numel)``) and one record ``<name>/data/<key>`` per
storage. :func:`declared_state` unpickles ``data.pkl`` alone with the restricted unpickler of
:mod:`mla.weights.safe_load` plus those torch names, and checks, before ``torch.load`` allocates
anything:

- each storage's ``numel`` x element size equals the size of its record, and all records together
  fit in the file (so a 437 kB file cannot declare a 128 GB storage);
- each tensor's elements fit in its storage from its offset (so zero or overlapping strides cannot
  turn a small storage into a huge tensor once it is copied).

The result is the same tree with every tensor replaced by an empty tensor of its declared shape and
dtype on the ``meta`` device: callers run their name and shape checks (or a whole conversion) on it.
"""
from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mla.weights.safe_load import (LEGACY_HINT, RestrictedUnpickler, UnsafeCheckpointError, _ints, _PersistentId,
                                   unpickle)

_STORAGES = {f"{name}Storage": dtype for name, dtype in (
    ("Float", torch.float32), ("Double", torch.float64), ("Half", torch.float16), ("BFloat16", torch.bfloat16),
    ("Long", torch.int64), ("Int", torch.int32), ("Short", torch.int16), ("Char", torch.int8),
    ("Byte", torch.uint8), ("Bool", torch.bool), ("ComplexFloat", torch.complex64),
    ("ComplexDouble", torch.complex128), ("Untyped", torch.uint8))}
_DTYPES = {str(d).removeprefix("torch."): d for d in _STORAGES.values()}


@dataclass(frozen=True)
class _StorageType:
    name: str
    dtype: torch.dtype


@dataclass(frozen=True)
class _Storage:
    key: str
    dtype: torch.dtype
    numel: int


class _DeclaredUnpickler(RestrictedUnpickler):
    """The restricted unpickler plus torch's tensor rebuild, yielding meta tensors."""

    records: dict[str, zipfile.ZipInfo] = {}
    admits = "tensors, numpy scalars, plain containers, numbers and strings"

    def __init__(self, file: Any, source: str, size: int) -> None:
        super().__init__(file, source, size)
        self.storages: dict[str, _Storage] = {}

    def allowed(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return self._rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return lambda data, requires_grad, hooks: data
        if module == "torch._utils" and name == "_rebuild_parameter_with_state":
            return lambda data, requires_grad, hooks, state: data
        if module == "torch" and name in _STORAGES:
            return _StorageType(name, _STORAGES[name])
        if module == "torch" and name in _DTYPES:
            return _DTYPES[name]
        if module == "torch" and name == "Size":
            return torch.Size
        return super().allowed(module, name)

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str) and isinstance(pid[4], int)):
            raise UnsafeCheckpointError(f"{self.source}: unexpected persistent id {str(pid)[:80]!r}")
        _, kind, key, _location, numel = pid
        if key in self.storages:
            return self.storages[key]
        record = self.records.get(key)
        if record is None:
            raise UnsafeCheckpointError(f"{self.source}: storage {key!r} has no data record in the archive")
        nbytes = numel * kind.dtype.itemsize
        if numel < 0 or nbytes != record.file_size:
            raise UnsafeCheckpointError(f"{self.source}: storage {key!r} declares {numel} x {kind.name} "
                                        f"({nbytes} bytes), but its record holds {record.file_size} bytes")
        storage = _Storage(key, kind.dtype, numel)
        self.storages[key] = storage
        return storage

    def _rebuild_tensor(self, storage: Any, offset: Any, size: Any, stride: Any, *_rest: Any) -> torch.Tensor:
        if not isinstance(storage, _Storage) or not isinstance(offset, int) or offset < 0:
            raise UnsafeCheckpointError(f"{self.source}: malformed tensor (storage {storage!r}, offset {offset!r})")
        size = _ints(size, f"{self.source}: tensor size")
        stride = _ints(stride, f"{self.source}: tensor stride")
        numel = math.prod(size)
        extent = 1 + sum((n - 1) * s for n, s in zip(size, stride)) if numel else 0
        if len(stride) != len(size) or offset + max(numel, extent) > storage.numel:
            raise UnsafeCheckpointError(
                f"{self.source}: a tensor of shape {size} (stride {stride}, offset {offset}) needs more than the "
                f"{storage.numel} elements of its storage {storage.key!r}")
        return torch.empty(size, dtype=storage.dtype, device="meta")


def declared_state(path: str | Path) -> Any:
    """The object tree of the torch zip ``path`` with meta tensors of the declared shapes (see module doc)."""
    path = Path(path)
    size = os.path.getsize(path)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            pickles = [i for i in infos if i.filename.endswith("/data.pkl") and i.filename.count("/") == 1]
            if len(pickles) != 1:
                if not zf.namelist():
                    raise UnsafeCheckpointError(f"{path}: an empty zip archive, not a torch.save file")
                raise UnsafeCheckpointError(f"{path}: not a torch.save zip file (expected one <name>/data.pkl, "
                                            f"found {len(pickles)})")
            prefix = pickles[0].filename[: -len("data.pkl")] + "data/"
            records = {i.filename[len(prefix):]: i for i in infos if i.filename.startswith(prefix)}
            total = sum(i.file_size for i in records.values())
            if total > size:
                raise UnsafeCheckpointError(f"{path}: its tensor records declare {total} bytes in a file of {size}")
            unpickler = type("_Bound", (_DeclaredUnpickler,), {"records": records})
            with zf.open(pickles[0]) as fh:
                try:
                    return unpickle(fh, str(path), min(pickles[0].file_size, size), unpickler)
                except _PersistentId:  # cannot happen: persistent_load is overridden
                    raise UnsafeCheckpointError(f"{path}: {LEGACY_HINT}") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, RuntimeError) as exc:
        raise UnsafeCheckpointError(f"{path}: not a readable torch zip file: {exc}") from None
