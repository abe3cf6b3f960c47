"""Where the real datasets' data phase puts its files, and what it hands to ``mla acquire`` and
``mla convert-weights`` (no torch: the DAG imports this).

    data/splits/<d>/                official split lists (``mla acquire --splits``), downloaded
    data/raw/<d>/                   ``raw.<d>.download``: the media as the dataset ships them and
                                    manifest.json (written last: its presence means complete)
                                    ``raw.<d>.path``: manifest.json only; the copy stays where it lies
    data/features/<d>/              ``mla prepare``: shards + manifest
    data/weights/<name>.pt(.json)   ``mla convert-weights`` of ``weights.<name>``

The raw data of a copy used in place (licence-restricted or user-provided: IEMOCAP, a Kinetics-400
copy, Food-101, MVSA) are never an output of any rule or DVC stage; its manifest (per-file sha256)
is what Snakemake and DVC track. :mod:`mla.grid` (``raw_dir``, ``feature_dir``) takes these paths for real datasets.
"""
from __future__ import annotations

import json
import shlex

from mla import catalog
from mla.config import WEIGHTS_DIR, model_for, weights_path

MANIFEST = "manifest.json"


def real_datasets(cfg: dict) -> list[str]:
    """The grid's datasets that are not generated, in config order."""
    return [d for d in cfg["datasets"] if catalog.dataset_info(d).family != "builtin"]


def split_dir(dataset: str) -> str:
    """The official split lists of ``dataset``."""
    return f"data/splits/{dataset}"


def raw_dir(dataset: str) -> str:
    """What the pipeline records of the raw data: the download, or only a copy's manifest."""
    return f"data/raw/{dataset}"


def raw_manifest(dataset: str) -> str:
    """The acquisition's output: written last by ``mla acquire`` (download or verification)."""
    return f"{raw_dir(dataset)}/{MANIFEST}"


def feature_dir(dataset: str) -> str:
    return f"data/features/{dataset}"


def downloads(cfg: dict, dataset: str) -> bool:
    """True when ``mla acquire`` downloads ``dataset`` (``raw.<d>.download``), False for a copy
    verified where it lies (``raw.<d>.path``)."""
    return bool(cfg["raw"][dataset].get("download"))


def raw_root(cfg: dict, dataset: str) -> str:
    """The directory ``mla prepare`` reads the media from."""
    return raw_dir(dataset) if downloads(cfg, dataset) else cfg["raw"][dataset]["path"]


def prepare_options(cfg: dict, dataset: str) -> dict:
    """The ``prepare.<d>`` section (empty when absent)."""
    return dict((cfg.get("prepare") or {}).get(dataset) or {})


def allow_missing(cfg: dict, dataset: str) -> str | None:
    """The listing of unavailable samples (``prepare.<d>.allow_missing``; Kinetics-Sounds only)."""
    return prepare_options(cfg, dataset).get("allow_missing")


def user_files(cfg: dict, dataset: str) -> list[str]:
    """Files the user provides for preparing ``dataset``: the WordPiece vocabulary and the
    allow-missing listing, where configured (``build`` is no file)."""
    opts = prepare_options(cfg, dataset)
    files = [(opts.get("text") or {}).get("vocab"), opts.get("allow_missing")]
    return [f for f in files if f and f != "build"]


def prepare_module_file(dataset: str) -> str:
    """The source file of ``dataset``'s module in ``mla prepare`` (e.g. ``mla/data/cremad.py``)."""
    from mla.data.prepare import MODULES

    return MODULES[dataset].replace(".", "/") + ".py"


def acquire_args(cfg: dict, dataset: str) -> list[str]:
    """``mla acquire`` options after ``--dataset``/``--splits``/``--manifest`` for ``dataset``."""
    raw = cfg["raw"][dataset]
    if downloads(cfg, dataset):
        return ["--root", raw_dir(dataset)] + (["--commit", raw["commit"]] if raw.get("commit") else [])
    args = ["--in-place", "--root", raw["path"]]
    if raw.get("reference"):
        args += ["--reference", raw["reference"]]
    if allow_missing(cfg, dataset):
        args += ["--allow-missing", allow_missing(cfg, dataset)]
    return args


def shell_args(args: list[str]) -> str:
    """``args`` quoted for a shell command line."""
    return " ".join(shlex.quote(a) for a in args)


def weights_of(cfg: dict, dataset: str) -> list[str]:
    """The converted weight files ``dataset``'s encoders load (``data/weights/<name>.pt``)."""
    specs = model_for(cfg, dataset)["encoders"].values()
    return sorted({s["weights"] for s in specs if str(s.get("weights", "")).startswith(WEIGHTS_DIR + "/")})


def weights_used(cfg: dict) -> dict[str, dict]:
    """``{data/weights/<name>.pt: weights.<name>}`` for every conversion the grid's datasets load."""
    by_path = {weights_path(n): spec for n, spec in (cfg.get("weights") or {}).items()}
    return {p: by_path[p] for d in cfg["datasets"] for p in weights_of(cfg, d)}


def convert_args(spec: dict) -> list[str]:
    """``mla convert-weights`` options for one ``weights.<name>`` entry (without --out)."""
    args = ["--kind", spec["kind"], "--src", spec["source"]]
    if spec.get("options"):
        args += ["--options", json.dumps(spec["options"], sort_keys=True)]
    if spec.get("released_patch_order"):
        args.append("--released-patch-order")
    if spec.get("sha256"):
        args += ["--sha256", spec["sha256"]]
    return args


def data_dirs(cfg: dict) -> list[str]:
    """The directories the data phase owns for the real datasets (DVC outs of paper/dvc.yaml's
    data stage): split lists, raw data (or manifests), feature stores, and the converted weights."""
    out = []
    for d in real_datasets(cfg):
        out += [split_dir(d), raw_dir(d), feature_dir(d)]
    if weights_used(cfg):
        out.append(WEIGHTS_DIR)
    return out


def data_outputs(cfg: dict) -> list[str]:
    """Every path the data phase writes for the real datasets (rule outputs)."""
    out = []
    for d in real_datasets(cfg):
        out += [split_dir(d), raw_manifest(d), feature_dir(d)]
    for p in weights_used(cfg):
        out += [p, p + ".json"]
    return out


# --- the authors' released MLA checkpoints (released_checkpoints; workflow/rules/released.smk) ---
def released_checkpoints(cfg: dict) -> dict[str, dict]:
    """``released_checkpoints.<dataset>`` entries: the authors' files to score ({} when the key is absent)."""
    return dict(cfg.get("released_checkpoints") or {})


def released_weights(dataset: str) -> str:
    """Where ``convert-weights --kind released`` writes the released checkpoint of ``dataset``
    (``.pt.json`` beside it); data/weights/ is cached by DVC but never pushed (paper/dvc.yaml)."""
    return f"{WEIGHTS_DIR}/released/{dataset}.pt"


def released_scores_dir(results_dir: str, dataset: str) -> str:
    """Where ``score-released`` writes ``metrics.json`` and ``provenance.json`` for ``dataset``."""
    return f"{results_dir}/released_checkpoints/{dataset}"


def released_convert_args(cfg: dict, dataset: str) -> list[str]:
    """``mla convert-weights`` options (without ``--out``) for the released checkpoint of ``dataset``:
    its path and the sizes of the config's encoders for ``dataset`` (one entry per encoder name),
    so that the conversion checks exactly the shapes ``score-released`` builds."""
    from mla.config import ConfigError

    model = model_for(cfg, dataset)
    options: dict[str, dict] = {}
    for m in catalog.dataset_info(dataset).modalities:
        spec = model["encoders"][m]
        sizes = {k: v for k, v in spec.items() if k not in ("name", "weights", "weights_prefix")}
        sizes["out_dim"] = model["feature_dim"]
        if options.setdefault(spec["name"], sizes) != sizes:
            raise ConfigError(f"config key model.datasets.{dataset}.encoders: the {spec['name']} encoders of "
                              f"{dataset} differ between modalities; convert-weights --options holds one size "
                              f"per encoder name")
    entry = released_checkpoints(cfg)[dataset]
    return convert_args({"kind": "released", "source": entry["path"], "options": options, "sha256": entry.get("sha256")})
