"""What the pipeline knows about datasets and methods, without importing torch.

The DAG, the config validation and the grid need names, modalities and class counts; the
heavy implementations (mla/data, mla/methods) register under the same names, and a test
checks that the two agree.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset's modalities (in the order used everywhere) and its family.

    ``family`` decides where its files live: generated (``builtin``) data under
    ``data/raw/builtin/<name>``, real datasets under ``data/raw/<name>``.
    ``paper_key`` names the paper dataset whose published numbers are shown beside it.
    """

    name: str
    modalities: tuple[str, ...]
    n_classes: int
    family: str
    paper_key: str


@dataclass(frozen=True)
class MethodInfo:
    """A training method's grid-level facts.

    ``per_modality``: one run per modality (``unimodal``). ``modality_counts``: how many
    modalities it supports. ``reuses``: a method whose runs (same phase, seed and rate) this
    one assembles instead of training (``late_fusion`` reuses ``unimodal``). ``frozen_features``:
    with ``reuses``, the method still trains, on the fixed features that the reused runs' encoders
    compute (the missing-modality baselines of Table 2, ``mla/frozen.py``), instead of assembling.
    """

    name: str
    per_modality: bool = False
    modality_counts: tuple[int, ...] = (2, 3)
    reuses: str | None = None
    frozen_features: bool = False

    @property
    def assembles(self) -> bool:
        """True for a method that only scores other jobs' runs (no training, no work directory)."""
        return self.reuses is not None and not self.frozen_features


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        DatasetInfo("builtin_av", ("audio", "video"), 6, "builtin", "cremad"),
        DatasetInfo("builtin_it", ("image", "text"), 8, "builtin", "food101"),
        DatasetInfo("builtin_ait", ("audio", "image", "text"), 4, "builtin", "iemocap"),
        # The paper's five datasets (MLA.md 2.1); class counts as in the official lists (3.11, 3.12).
        # Kinetics-Sounds: OGM-GE's 31-class lists (3.11.3, D11). IEMOCAP's image is one face frame.
        DatasetInfo("cremad", ("audio", "video"), 6, "real", "cremad"),
        DatasetInfo("ks", ("audio", "video"), 31, "real", "ks"),
        DatasetInfo("food101", ("image", "text"), 101, "real", "food101"),
        DatasetInfo("mvsa", ("image", "text"), 3, "real", "mvsa"),
        DatasetInfo("iemocap", ("audio", "image", "text"), 4, "real", "iemocap"),
    )
}

METHODS: dict[str, MethodInfo] = {
    m.name: m
    for m in (
        MethodInfo("unimodal", per_modality=True, modality_counts=(1, 2, 3)),
        MethodInfo("sum"),
        MethodInfo("concat"),
        MethodInfo("late_fusion", reuses="unimodal"),
        MethodInfo("film"),
        MethodInfo("bigated"),
        MethodInfo("ogm_ge"),
        MethodInfo("qmf"),
        MethodInfo("mla"),
        MethodInfo("mla_released"),
        # Table 2's missing-modality baselines: trained on the unimodal runs' fixed features.
        MethodInfo("cca", reuses="unimodal", frozen_features=True),
        MethodInfo("dcca", reuses="unimodal", frozen_features=True),
        MethodInfo("dccae", reuses="unimodal", frozen_features=True),
    )
}

# Method names of the paper's Table 1 in its column order (paper_tables.yaml keys).
PAPER_METHODS = ("sum", "concat", "late_fusion", "film", "bigated", "ogm_ge", "qmf", "mla")


def _unknown(kind: str, name: str, valid: dict) -> ValueError:
    return ValueError(f"unknown {kind} {name!r}; valid names: {', '.join(sorted(valid))}")


def dataset_info(name: str) -> DatasetInfo:
    """The catalog entry of dataset ``name``; unknown names list the valid ones."""
    if name not in DATASETS:
        raise _unknown("dataset", name, DATASETS)
    return DATASETS[name]


def method_info(name: str) -> MethodInfo:
    """The catalog entry of method ``name``; unknown names list the valid ones."""
    if name not in METHODS:
        raise _unknown("method", name, METHODS)
    return METHODS[name]
