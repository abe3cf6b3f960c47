"""On-disk feature store: sharded ``.npy`` arrays plus a checksummed ``manifest.json`` (numpy only).

Layout of one dataset's store::

    <feat_dir>/manifest.json
    <feat_dir>/<split>/<modality>-<k:03d>.npy   # k-th shard, at most shard_size samples
    <feat_dir>/<split>/labels-<k:03d>.npy
    <feat_dir>/<split>/ids.txt                  # one id per line, in array order

for split in train, val, test.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mla.data.splits import sha256_file

SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"


class FeatureStoreError(ValueError):
    """The store on disk does not match its manifest; the message names the offending file."""


@dataclass
class SplitArrays:
    """One split loaded from the store, shards concatenated in sample order."""

    ids: list[str]
    labels: np.ndarray
    arrays: dict[str, np.ndarray]
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


def _load_checked(feat_dir: Path, entry: dict, count: int, spec: dict, verify: bool) -> np.ndarray:
    path = feat_dir / entry["file"]
    if not path.is_file():
        raise FeatureStoreError(f"missing shard {path}")
    if verify and sha256_file(path) != entry["sha256"]:
        raise FeatureStoreError(f"sha256 mismatch for shard {path}")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # a corrupt header is reported with the file name
        raise FeatureStoreError(f"cannot load shard {path}: {exc}") from exc
    if arr.shape != (count, *spec["shape"]) or arr.dtype != np.dtype(spec["dtype"]):
        raise FeatureStoreError(
            f"shard {path} has shape {arr.shape} dtype {arr.dtype}, manifest expects "
            f"{(count, *spec['shape'])} {spec['dtype']}"
        )
    return arr


def load_split(feat_dir: str | Path, split: str, verify: bool = True) -> SplitArrays:
    """Load one split (``train``/``val``/``test``), concatenating its shards.

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
    parts: dict[str, list[np.ndarray]] = {k: [] for k in kinds}
    total = 0
    for shard in info["shards"]:
        for kind in kinds:
            parts[kind].append(_load_checked(feat_dir, shard["files"][kind], shard["count"], specs[kind], verify))
        total += shard["count"]
    if total != info["count"]:
        raise FeatureStoreError(f"shards of {split!r} in {feat_dir / MANIFEST} hold {total} samples, "
                                f"manifest says {info['count']}")
    cat = {
        kind: (np.concatenate(parts[kind]) if parts[kind]
               else np.zeros((0, *specs[kind]["shape"]), dtype=specs[kind]["dtype"]))
        for kind in kinds
    }
    labels = cat.pop("labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(man["classes"])):
        raise FeatureStoreError(f"labels of {split!r} in {feat_dir} fall outside the {len(man['classes'])} classes")
    return SplitArrays(ids=ids, labels=labels, arrays=cat, classes=list(man["classes"]))


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
