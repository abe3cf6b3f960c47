"""What the pipeline knows about datasets and methods, without importing torch.

The DAG, the config validation and the grid need names, modalities and class counts; the
heavy implementations (mla/data, mla/methods) register under the same names, and a test
checks that the two agree. Datasets are listed below; methods are discovered: every file
``mla/methods/<name>.py`` with a literal ``CATALOG = {...}`` is the method ``<name>`` (read with
:mod:`ast`, never imported), so adding a method is adding its file.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset's modalities (in the order used everywhere) and its family.

    ``family`` decides where its files live: generated (``builtin``) data under
    ``data/raw/builtin/<name>-<settings hash>``, real datasets under ``data/raw/<name>`` (mla/grid.py).
    ``paper_key`` names the paper dataset whose published numbers are shown beside it.
    """

    name: str
    modalities: tuple[str, ...]
    n_classes: int
    family: str
    paper_key: str


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        DatasetInfo("builtin_av", ("audio", "video"), 6, "builtin", "cremad"),
        DatasetInfo("builtin_it", ("image", "text"), 8, "builtin", "food101"),
        DatasetInfo("builtin_ait", ("audio", "image", "text"), 4, "builtin", "iemocap"),
        # The paper's five datasets (Sec. 4.1.1); class counts as in their official split lists.
        # Kinetics-Sounds: the 31-class lists of OGM-GE (the released MLA code ships none).
        # IEMOCAP's image is one face frame.
        DatasetInfo("cremad", ("audio", "video"), 6, "real", "cremad"),
        DatasetInfo("ks", ("audio", "video"), 31, "real", "ks"),
        DatasetInfo("food101", ("image", "text"), 101, "real", "food101"),
        DatasetInfo("mvsa", ("image", "text"), 3, "real", "mvsa"),
        DatasetInfo("iemocap", ("audio", "image", "text"), 4, "real", "iemocap"),
    )
}


@dataclass(frozen=True)
class MethodInfo:
    """A training method's grid-level facts and options, read from ``CATALOG`` in its file.

    ``per_modality``: one run per modality (``unimodal``). ``modality_counts``: how many
    modalities it supports. ``reuses``: a method whose runs (same phase, seed and rate) this
    one assembles instead of training (``late_fusion`` reuses ``unimodal``). ``frozen_features``:
    with ``reuses``, the method still trains, on the fixed features that the reused runs' encoders
    compute (the missing-modality baselines of Table 2, ``mla/frozen.py``), instead of assembling.
    ``options``: option name -> ``{"default": value, "choices": [...]}`` (choices where the option
    has a fixed set). ``source``: the method's file (``mla/methods/<name>.py``), the code its jobs
    depend on.
    """

    name: str
    per_modality: bool = False
    modality_counts: tuple[int, ...] = (2, 3)
    reuses: str | None = None
    frozen_features: bool = False
    options: dict = field(default_factory=dict)
    source: str = ""

    @property
    def assembles(self) -> bool:
        """True for a method that only scores other jobs' runs (no training, no work directory)."""
        return self.reuses is not None and not self.frozen_features


METHODS_DIR = Path(__file__).resolve().with_name("methods")
CATALOG_KEYS = {"per_modality", "modality_counts", "reuses", "frozen_features", "options"}


def read_catalog(path: Path) -> dict | None:
    """The literal ``CATALOG = {...}`` at the top level of a method file, or None (a helper
    module). Parsed with :mod:`ast`, so neither torch nor the method's code is imported."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == "CATALOG" for t in targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                raise ValueError(f"{path}:{node.lineno}: CATALOG must be a literal (numbers, strings, "
                                 f"lists, dicts, True/False/None), so that it is read without importing the file") from None
            return _checked(path, value)
    return None


def _checked(path: Path, value: object) -> dict:
    if not isinstance(value, dict) or set(value) - CATALOG_KEYS:
        raise ValueError(f"{path}: CATALOG must be a dict with keys among {sorted(CATALOG_KEYS)}")
    for opt, spec in (value.get("options") or {}).items():
        if not isinstance(spec, dict) or "default" not in spec or set(spec) - {"default", "choices"}:
            raise ValueError(f"{path}: CATALOG options.{opt} must be {{'default': ..., 'choices': [...]}} (choices optional)")
        if "choices" in spec and spec["default"] not in spec["choices"]:
            raise ValueError(f"{path}: CATALOG options.{opt}: default {spec['default']!r} is not among its choices")
    return value


def discover_methods(directory: Path = METHODS_DIR) -> dict[str, MethodInfo]:
    """Every method file of ``directory`` that carries a ``CATALOG``, by file name (sorted)."""
    out = {}
    for path in sorted(directory.glob("*.py")):
        entry = read_catalog(path)
        if entry is None:
            continue
        name = path.stem
        out[name] = MethodInfo(
            name=name,
            per_modality=bool(entry.get("per_modality", False)),
            modality_counts=tuple(entry.get("modality_counts", (2, 3))),
            reuses=entry.get("reuses"),
            frozen_features=bool(entry.get("frozen_features", False)),
            options=dict(entry.get("options") or {}),
            source=f"mla/methods/{path.name}",
        )
    for info in out.values():
        if info.reuses is not None and info.reuses not in out:
            raise ValueError(f"{info.source}: CATALOG reuses {info.reuses!r}, which is no method; "
                             f"valid names: {', '.join(sorted(out))}")
    return out


# Discovered once per process: parsing a dozen small files takes milliseconds.
METHODS: dict[str, MethodInfo] = discover_methods()


def option_defaults(entry: dict) -> dict:
    """``{option: default}`` of a ``CATALOG`` literal: the ``defaults`` of its Method class."""
    return {k: spec["default"] for k, spec in (entry.get("options") or {}).items()}


def option_choices(entry: dict) -> dict:
    """``{option: (choice, ...)}`` of a ``CATALOG`` literal, for the options that list choices."""
    return {k: tuple(spec["choices"]) for k, spec in (entry.get("options") or {}).items() if "choices" in spec}


def _type_name(value: object) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(type(value), "")


def check_options(method: str, options: dict, where: str) -> None:
    """Check ``options`` of ``method`` against its catalog entry: unknown names list the valid
    ones; values must have the default's type (an integer passes for a number) and, where the
    option lists choices, be one of them. ``where`` names the config key in the message."""
    info = method_info(method)
    for opt, value in options.items():
        if opt not in info.options:
            raise ValueError(f"config key {where}.{opt}: method {method} has no option {opt!r}; "
                             f"valid options: {', '.join(sorted(info.options)) or '(none)'} ({info.source})")
        spec = info.options[opt]
        default = spec["default"]
        if "choices" in spec:
            if value not in spec["choices"]:
                raise ValueError(f"config key {where}.{opt}: {value!r} is not one of "
                                 f"{', '.join(map(str, spec['choices']))} ({info.source})")
            continue
        ok = (default is None or type(value) is type(default)
              or (type(default) is float and type(value) is int))
        if not ok:
            raise ValueError(f"config key {where}.{opt}: {value!r} is not {_type_name(default)} "
                             f"(default {default!r}, {info.source})")


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
