"""On-disk feature store: sharded ``.npy`` arrays plus a checksummed ``manifest.json`` (numpy only).

Layout of one dataset's store::

    <feat_dir>/manifest.json
    <feat_dir>/<split>/<modality>-<k:03d>.npy   # k-th shard, at most shard_size samples
    <feat_dir>/<split>/labels-<k:03d>.npy
    <feat_dir>/<split>/ids.txt                  # one id per line, in array order

for split in train, val, test.

Opening a split reads no shard: a split's modality is a :class:`ShardedArray` whose rows are read
when indexed, so training holds a few batches in memory, never a whole split (Food-101's training
images alone are ~9.5 GB as uint8). Labels and ids are small and read into memory.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from mla.data.splits import sha256_file

SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"


class FeatureStoreError(ValueError):
    """The store on disk does not match its manifest; the message names the offending file."""


@dataclass(frozen=True)
class Shard:
    """One checked ``.npy`` shard: where its rows begin in the file, and how many it holds."""

    path: Path
    offset: int  # bytes before row 0 (the .npy header)
    count: int


class ShardedArray:
    """The rows of a split's shards (C-order ``.npy`` files of equal row shape) seen as one array.

    Nothing is read when the split is opened. ``x[i]``, ``x[a:b]``, ``x[rows]`` (integer array),
    ``x[rows, ...]`` read only those rows, with positional reads into a new ``np.ndarray``; rows
    are read in ascending order, each run of consecutive rows in one read. Reads, unlike a memory
    map, leave no file pages mapped in the process, so its resident memory stays a few batches
    (a memory-mapped epoch would count every touched page of the store as the job's RSS).
    ``np.asarray(x)`` reads every row (small splits, tests).
    """

    def __init__(self, shards: list[Shard], row_shape: tuple[int, ...], dtype: np.dtype | str):
        self.shards = shards
        self.starts = np.cumsum([0, *(sh.count for sh in shards)])  # row k of shard s is row starts[s] + k
        self.shape = (int(self.starts[-1]), *row_shape)
        self.dtype = np.dtype(dtype)
        self.row_bytes = int(np.prod(row_shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"ShardedArray(shape={self.shape}, dtype={self.dtype}, shards={len(self.shards)})"

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The rows at ``rows``, in that order (repeats allowed, negative counts from the end)."""
        rows = np.asarray(rows).reshape(-1).astype(np.int64)
        n = len(self)
        if len(rows) and (rows.min() < -n or rows.max() >= n):
            raise IndexError(f"row index out of range for {n} rows")
        uniq, inverse = np.unique(np.where(rows < 0, rows + n, rows), return_inverse=True)
        out = self._read_sorted(uniq)
        return out if len(uniq) == len(rows) and (uniq == rows).all() else out[inverse]

    def _read_sorted(self, rows: np.ndarray) -> np.ndarray:
        """Distinct ascending ``rows``, one read per run of consecutive rows within a shard."""
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        if not len(rows):
            return out
        shard = np.searchsorted(self.starts, rows, side="right") - 1
        cuts = np.flatnonzero((np.diff(rows) != 1) | (np.diff(shard) != 0)) + 1
        run_lo, run_hi = np.concatenate([[0], cuts]), np.concatenate([cuts, [len(rows)]])
        buf = memoryview(out.reshape(-1).view(np.uint8))
        for s in np.unique(shard):  # each shard's file opened once per call
            sh, mine = self.shards[s], shard[run_lo] == s
            with open(sh.path, "rb", buffering=0) as fh:
                for lo, hi in zip(run_lo[mine], run_hi[mine]):
                    at = sh.offset + int(rows[lo] - self.starts[s]) * self.row_bytes
                    _read_into(fh.fileno(), buf[lo * self.row_bytes:hi * self.row_bytes], at, sh.path)
        return out

    def __getitem__(self, key):
        rest = ()
        if isinstance(key, tuple):
            key, rest = (key[0], key[1:]) if key else (slice(None), ())
        if isinstance(key, (int, np.integer)):
            if not -len(self) <= key < len(self):
                raise IndexError(f"row {key} out of range for {len(self)} rows")
            return self.take(np.array([key]))[0][rest]
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            out = (self._read_sorted if step > 0 else self.take)(np.arange(start, stop, step))
        else:
            key = np.asarray(key)
            out = self.take(np.flatnonzero(key) if key.dtype == bool else key)
        return out[(slice(None), *rest)] if rest else out

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        if copy is False:
            raise ValueError("a ShardedArray is read from its files: it cannot be viewed without copying")
        out = self[:]
        return out if dtype is None else out.astype(dtype)


def _read_into(fd: int, buf: memoryview, offset: int, path: Path) -> None:
    """Fill ``buf`` from byte ``offset`` of the open file ``fd`` (a short file is an error naming it)."""
    while len(buf):
        got = os.preadv(fd, [buf], offset)
        if got <= 0:
            raise FeatureStoreError(f"shard {path} ended early (file changed after it was checked?)")
        buf, offset = buf[got:], offset + got


@dataclass
class SplitArrays:
    """One split of the store: ids and labels in memory, each modality's rows on disk
    (:class:`ShardedArray`; an in-memory ``np.ndarray`` serves as well)."""

    ids: list[str]
    labels: np.ndarray
    arrays: dict[str, ShardedArray | np.ndarray]
    classes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


def shard_name(kind: str, k: int) -> str:
    """File name of shard ``k`` of ``kind`` (a modality or ``labels``)."""
    return f"{kind}-{k:03d}.npy"


def save_shard(split_dir: Path, kind: str, k: int, array: np.ndarray) -> dict[str, str]:
    """Save one shard array and return its manifest entry ``{"file", "sha256"}`` (file relative to feat_dir)."""
    path = split_dir / shard_name(kind, k)
    np.save(path, np.ascontiguousarray(array), allow_pickle=False)
    return {"file": f"{split_dir.name}/{path.name}", "sha256": sha256_file(path)}


def read_manifest(feat_dir: str | Path) -> dict:
    """Load ``manifest.json`` of a store."""
    path = Path(feat_dir) / MANIFEST
    if not path.is_file():
        raise FeatureStoreError(f"missing feature manifest {path}")
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _load_checked(feat_dir: Path, entry: dict, count: int, spec: dict, verify: bool) -> Shard:
    """One shard, checked (checksum, header, shape, dtype, length) but not read."""
    path = feat_dir / entry["file"]
    if not path.is_file():
        raise FeatureStoreError(f"missing shard {path}")
    if verify and sha256_file(path) != entry["sha256"]:  # streamed: the file is never held in memory
        raise FeatureStoreError(f"sha256 mismatch for shard {path}")
    try:
        with open(path, "rb") as fh:
            version = npy_format.read_magic(fh)
            read_header = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}
            if version not in read_header:
                raise ValueError(f".npy format version {version} (the store writes 1.0 or 2.0)")
            shape, fortran_order, dtype = read_header[version](fh)
            offset = fh.tell()
    except Exception as exc:  # a corrupt header is reported with the file name
        raise FeatureStoreError(f"cannot load shard {path}: {exc}") from exc
    if shape != (count, *spec["shape"]) or dtype != np.dtype(spec["dtype"]):
        raise FeatureStoreError(
            f"shard {path} has shape {shape} dtype {dtype}, manifest expects "
            f"{(count, *spec['shape'])} {spec['dtype']}"
        )
    size = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if (fortran_order and len(shape) > 1) or path.stat().st_size != size:
        raise FeatureStoreError(f"cannot load shard {path}: {path.stat().st_size} bytes, expected a C-order "
                                f"array of {size} bytes")
    return Shard(path, offset, count)


def load_split(feat_dir: str | Path, split: str, verify: bool = True) -> SplitArrays:
    """Open one split (``train``/``val``/``test``): its shards checked, their rows not read.

    With ``verify`` every shard's and ``ids.txt``'s sha256 is checked against the manifest. Counts, shapes
    and dtypes are always checked. Any mismatch raises :class:`FeatureStoreError` naming the file.
    """
    feat_dir = Path(feat_dir)
    man = read_manifest(feat_dir)
    if split not in man["splits"]:
        raise FeatureStoreError(f"split {split!r} not in {feat_dir / MANIFEST} (has {sorted(man['splits'])})")
    info = man["splits"][split]
    specs = man["arrays"]
    ids_path = feat_dir / split / "ids.txt"
    if not ids_path.is_file():
        raise FeatureStoreError(f"missing id list {ids_path}")
    if verify and sha256_file(ids_path) != info["ids_sha256"]:
        raise FeatureStoreError(f"sha256 mismatch for id list {ids_path}")
    ids = ids_path.read_text(encoding="utf-8").split()
    if len(ids) != info["count"]:
        raise FeatureStoreError(f"{ids_path} has {len(ids)} ids, manifest says {info['count']}")

    kinds = ["labels", *man["modalities"]]
    parts: dict[str, list[Shard]] = {k: [] for k in kinds}
    total = 0
    for shard in info["shards"]:
        for kind in kinds:
            parts[kind].append(_load_checked(feat_dir, shard["files"][kind], shard["count"], specs[kind], verify))
        total += shard["count"]
    if total != info["count"]:
        raise FeatureStoreError(f"shards of {split!r} in {feat_dir / MANIFEST} hold {total} samples, "
                                f"manifest says {info['count']}")
    arrays = {kind: ShardedArray(parts[kind], tuple(specs[kind]["shape"]), specs[kind]["dtype"]) for kind in kinds}
    labels = arrays.pop("labels")[:]  # a few bytes per sample: read into memory
    if len(labels) and (labels.min() < 0 or labels.max() >= len(man["classes"])):
        raise FeatureStoreError(f"labels of {split!r} in {feat_dir} fall outside the {len(man['classes'])} classes")
    return SplitArrays(ids=ids, labels=labels, arrays=arrays, classes=list(man["classes"]))


def load_vocab(feat_dir: str | Path, verify: bool = True) -> list[str]:
    """The text vocabulary (token id -> word) of a store that has a text modality."""
    feat_dir = Path(feat_dir)
    man = read_manifest(feat_dir)
    if "text" not in man:
        raise FeatureStoreError(f"{feat_dir / MANIFEST} has no text vocabulary")
    path = feat_dir / man["text"]["vocab_file"]
    if verify and sha256_file(path) != man["text"]["vocab_sha256"]:
        raise FeatureStoreError(f"sha256 mismatch for vocabulary {path}")
    with open(path, encoding="utf-8") as fh:
        return list(json.load(fh)["vocab"])
