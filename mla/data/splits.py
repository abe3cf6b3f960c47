"""Split-list helpers: read official-style lists, carve a stratified validation split, hash files.

No torch import here, so data preparation stays cheap.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np


def read_list(path: str | Path) -> list[tuple[str, str]]:
    """Read a split list with one ``"<id> <label>"`` line per sample.

    Blank lines are ignored; any other line that does not have exactly two whitespace-separated fields, or
    repeats an id, raises ``ValueError`` naming the file and the 1-based line number.
    """
    path = Path(path)
    out: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) != 2:
                raise ValueError(f"{path}:{lineno}: expected '<id> <label>', got {line.rstrip()!r}")
            sid, label = fields
            if sid in seen:
                raise ValueError(f"{path}:{lineno}: duplicate id {sid!r} (first on line {seen[sid]})")
            seen[sid] = lineno
            out.append((sid, label))
    return out


def carve_validation(labels: Sequence[int], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded split of training indices into ``(train_idx, val_idx)``, both sorted.

    Per class with ``n`` samples, ``min(floor(fraction * n + 0.5), n - 1)`` samples go to validation, so every
    class keeps at least one training sample (a singleton class stays entirely in train). Classes are
    visited in ascending order and each is permuted with one ``numpy.random.default_rng(seed)`` stream,
    so the result depends only on (labels, fraction, seed).
    """
    if not 0.0 <= float(fraction) < 1.0:
        raise ValueError(f"val fraction must be in [0, 1), got {fraction}")
    y = np.asarray(labels, dtype=np.int64)
    if y.ndim != 1:
        raise ValueError("labels must be one-dimensional")
    rng = np.random.default_rng(seed)
    val_parts = []
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        n_val = min(int(np.floor(fraction * len(idx) + 0.5)), len(idx) - 1)
        perm = rng.permutation(idx)  # drawn even when n_val == 0 so later classes see the same stream
        if n_val > 0:
            val_parts.append(perm[:n_val])
    val_idx = np.sort(np.concatenate(val_parts)) if val_parts else np.zeros(0, dtype=np.int64)
    is_val = np.zeros(len(y), dtype=bool)
    is_val[val_idx] = True
    return np.flatnonzero(~is_val).astype(np.int64), val_idx.astype(np.int64)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
