"""Missing-modality masks (Table 2): which (sample, modality) entries are present.

A mask is drawn once per split from (run seed, eta, split) and saved with the run.

- ``released``: CPM-Net's ``random_mask`` as the released code runs it (``dataset/dataset.py`` L596-640): every
  sample keeps one random modality, further entries are switched on at random, redrawn until
  the kept fraction is within 0.005 of 1 - eta (within one entry, 1/(n M), for splits too small
  to get that close, where the original would loop for ever). No sample loses every modality; for
  1 - eta <= 1/M exactly one modality is kept, so at eta = 0.7 with M = 3 the realised missing
  fraction is 2/3, not 0.7.
- ``independent``: the paper's wording, each modality of each sample dropped with
  probability eta independently. A sample may lose every modality; it is kept, its inputs
  are all zero, and fusion then uses every (zeroed) modality.

One mask per (seed, eta): the mask is always drawn for the dataset's full modality set, and
every job of the missing phase at that (seed, eta) uses it, a per-modality run (``unimodal``)
its own modality's column (see docs/methods/missing-modalities.md).
"""
from __future__ import annotations

import numpy as np

SPLITS = ("train", "val", "test")


def _one_per_sample(rs: np.random.RandomState, n: int, m: int) -> np.ndarray:
    return np.eye(m, dtype=bool)[rs.randint(0, m, size=n)]


def released_mask(n: int, m: int, rate: float, rs: np.random.RandomState, max_tries: int = 1000) -> np.ndarray:
    """CPM-Net's ``random_mask(view_num=m, alldata_len=n, missing_rate=rate)``; (n, m) bool."""
    keep = 1.0 - rate
    if keep <= 1.0 / m:
        return _one_per_sample(rs, n, m)
    if keep == 1.0:
        return np.ones((n, m), dtype=bool)
    tolerance = max(0.005, 1.0 / (n * m))  # [C] uses 0.005 and never ends on tiny splits
    for _ in range(max_tries):
        base = _one_per_sample(rs, n, m)
        extra = m * n * keep - n  # entries still to switch on after one per sample
        ratio = extra / (m * n)
        draw = rs.randint(0, 100, size=(n, m)) < int(ratio * 100)
        overlap = np.sum(draw & base)
        if overlap >= extra:  # only possible on tiny splits; [C] would divide by zero here
            continue
        ratio = extra / (1 - overlap / extra) / (m * n)  # compensate for draws on kept entries
        draw = rs.randint(0, 100, size=(n, m)) < int(ratio * 100)
        mask = draw | base
        if abs(keep - mask.mean()) < tolerance:
            return mask
    raise RuntimeError(f"released_mask: no mask within {tolerance} of keep rate {keep} after {max_tries} draws")


def independent_mask(n: int, m: int, rate: float, rs: np.random.RandomState) -> np.ndarray:
    """Each entry present with probability 1 - rate; (n, m) bool."""
    return rs.random_sample((n, m)) >= rate


MASKINGS = {"released": released_mask, "independent": independent_mask}


def draw_mask(masking: str, n: int, m: int, rate: float, seed: int, split: str) -> np.ndarray:
    """The presence mask of one split, a pure function of (masking, n, m, rate, seed, split)."""
    if masking not in MASKINGS:
        raise ValueError(f"unknown masking {masking!r}; valid: {', '.join(MASKINGS)}")
    entropy = [seed, round(rate * 1000), SPLITS.index(split)]
    rs = np.random.RandomState(np.random.SeedSequence(entropy).generate_state(1)[0])
    return MASKINGS[masking](n, m, rate, rs)


def realised(masks: dict[str, np.ndarray], modalities: tuple[str, ...]) -> dict[str, dict]:
    """Realised missing fractions of full (n, M) masks: overall and per modality column, per split."""
    for split, mask in masks.items():
        if mask.ndim != 2 or mask.shape[1] != len(modalities):
            raise ValueError(f"{split} mask of shape {mask.shape}: expected (n, {len(modalities)}) for {modalities}")
    def frac(present: np.ndarray) -> float | None:  # None for an empty split (val_fraction 0)
        return round(float(1 - present.mean()), 4) if present.size else None

    return {
        "overall": {s: frac(m) for s, m in masks.items()},
        "per_modality": {s: {mod: frac(m[:, j]) for j, mod in enumerate(modalities)} for s, m in masks.items()},
    }
