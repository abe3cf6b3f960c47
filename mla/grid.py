"""The one function that enumerates the experiment grid and every output path.

The Snakefile, the report and the tests all call :func:`jobs`; nothing else lists runs.
No torch here: Snakemake imports this module to build the DAG.

A *job* is one process: one dataset x method x variant, all seeds, so that PyTorch's
start-up cost is paid once per several runs. Each seed's run has its own directory.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from mla import catalog, real_paths
from mla.errors import UnsafeNameError
from mla.safepaths import check_name, is_name

PHASES = ("train", "missing", "ablation")
# Written last into a job's directory when all its seeds are in place: a directory without it
# (an interrupted or failed job, an empty directory) is unfinished, for Snakemake and the CLI alike.
COMPLETE = ".complete"


@dataclass(frozen=True)
class Run:
    """One training run (one seed) and where its outputs go."""

    job_id: str
    seed: int
    run_dir: str


@dataclass(frozen=True)
class Job:
    """One process of the grid: a dataset x method x variant over all seeds.

    ``options`` override the method's configured options (e.g. ``{"hgm": False}``);
    ``modality`` is set for per-modality methods (``unimodal``); ``missing_rate`` for the
    missing-modality phase.
    """

    phase: str
    dataset: str
    method: str
    tag: str
    seeds: tuple[int, ...]
    job_dir: str
    options: tuple[tuple[str, object], ...] = ()
    modality: str | None = None
    missing_rate: float | None = None
    needs: tuple[str, ...] = ()  # ids of the jobs whose runs this one reuses (late fusion; frozen-feature methods)

    @property
    def id(self) -> str:
        """``<phase>/<dataset>/<tag>``: the job's name on the command line."""
        return f"{self.phase}/{self.dataset}/{self.tag}"

    @property
    def marker(self) -> str:
        """The completion marker: the job's output for Snakemake, written after every seed."""
        return f"{self.job_dir}/{COMPLETE}"

    @property
    def runs(self) -> list[Run]:
        return [Run(self.id, s, f"{self.job_dir}/seed{s}") for s in self.seeds]


def _short_hash(settings: object) -> str:
    """12 hex digits of the sha256 of ``settings`` as canonical JSON."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def generator_settings(cfg: dict, dataset: str) -> dict:
    """What a built-in dataset's raw media depend on: its generator parameters (``data.<d>``)."""
    return cfg["data"][dataset]


def feature_settings(cfg: dict, dataset: str) -> dict:
    """What a built-in dataset's feature store depends on: its raw media (generator settings),
    the feature parameters of its modalities, the shard size and the validation carve."""
    mods = catalog.dataset_info(dataset).modalities
    return {"generator": generator_settings(cfg, dataset), "shard_size": cfg["features"]["shard_size"],
            "features": {m: cfg["features"][m] for m in mods},
            "split_seed": cfg["split_seed"], "val_fraction": cfg["val_fraction"]}


def raw_dir(cfg: dict, dataset: str) -> str:
    """Where a dataset's raw media live. Built-in data are keyed by the settings that generate
    them (``data/raw/builtin/<d>-<hash>``), so configs with other settings never share or
    overwrite them, and configs with the same settings share them."""
    info = catalog.dataset_info(dataset)
    if info.family != "builtin":
        return real_paths.raw_dir(dataset)
    return f"data/raw/builtin/{dataset}-{_short_hash(generator_settings(cfg, dataset))}"


def feature_dir(cfg: dict, dataset: str) -> str:
    """Where a dataset's feature store lives; built-in stores are keyed by
    :func:`feature_settings` (``data/features/builtin/<d>-<hash>``)."""
    info = catalog.dataset_info(dataset)
    if info.family != "builtin":
        return real_paths.feature_dir(dataset)
    return f"data/features/builtin/{dataset}-{_short_hash(feature_settings(cfg, dataset))}"


def results_dir(cfg: dict) -> str:
    return f"results/{cfg['name']}"


def report_dir(cfg: dict) -> str:
    return f"reports/{cfg['name']}"


REPORT_TABLES = ("table1", "table2", "table3", "selection", "released", "modality_gap")


def report_files(cfg: dict) -> list[str]:
    """Every file the report phase writes, the same for every config (tables of methods or analyses
    outside the grid say 'not run'), so dvc.yaml can list them: the report rule's outputs."""
    rep = report_dir(cfg)
    files = [f"{rep}/{t}.{ext}" for t in REPORT_TABLES for ext in ("md", "csv", "html")]
    return files + [f"{rep}/{f}" for f in ("claims.md", "readme.md", "report.html", "metrics.json", "scores.json",
                                          "training_curves.png", "modality_gap.png", "table1.png", "table2.png",
                                          "table3.png")]


def analysis_dir(cfg: dict, dataset: str) -> str:
    return f"{results_dir(cfg)}/analysis/{dataset}"


def _job(cfg: dict, phase: str, dataset: str, method: str, tag: str, **kw) -> Job:
    # The config's schema checks every name; checked again here because a job's names become its
    # directories, and a config dict need not have come through mla.config.load.
    check_name(cfg["name"], "config name", "set name: in the config")
    check_name(dataset, "dataset", "use a dataset of mla/catalog.py")
    check_name(tag, f"job tag of {phase}/{dataset}", "rename the ablation variant (ablation.variants) "
               "or the method it comes from")
    return Job(
        phase=phase,
        dataset=dataset,
        method=method,
        tag=tag,
        seeds=tuple(cfg["seeds"]),
        job_dir=f"{results_dir(cfg)}/{phase}/{dataset}/{tag}",
        **kw,
    )


def _supports(method: str, dataset: str) -> bool:
    n = len(catalog.dataset_info(dataset).modalities)
    return n in catalog.method_info(method).modality_counts


def _with_reused(methods: list[str]) -> list[str]:
    """``methods`` preceded by the methods whose runs they reuse (unimodal for late fusion)."""
    out: list[str] = []
    for m in methods:
        reused = catalog.method_info(m).reuses
        for name in ([reused] if reused else []) + [m]:
            if name not in out:
                out.append(name)
    return out


def _method_jobs(cfg: dict, phase: str, dataset: str, method: str, suffix: str = "", **kw) -> list[Job]:
    if not _supports(method, dataset):
        return []
    reused = catalog.method_info(method).reuses
    if reused:
        needs = tuple(j.id for j in _method_jobs(cfg, phase, dataset, reused, suffix, **kw))
        return [_job(cfg, phase, dataset, method, f"{method}{suffix}", needs=needs, **kw)]
    if catalog.method_info(method).per_modality:
        return [
            _job(cfg, phase, dataset, method, f"{method}-{m}{suffix}", modality=m, **kw)
            for m in catalog.dataset_info(dataset).modalities
        ]
    return [_job(cfg, phase, dataset, method, f"{method}{suffix}", **kw)]


def rate_tag(rate: float) -> str:
    """0.3 -> ``eta30``: missing rates as integer percent in paths."""
    return f"eta{round(rate * 100):02d}"


def jobs(cfg: dict) -> list[Job]:
    """Every training job of the config's grid, in a stable order.

    - train: datasets x methods (Table 1; ``unimodal`` once per modality; a method that
      reuses another's runs, like ``late_fusion``, brings that method's jobs along and
      ``needs`` them: it assembles them, or, with ``frozen_features`` (Table 2's
      missing-modality baselines), trains on their encoders' features as a job of its own);
    - missing: missing.datasets x missing.methods x missing.rates (Table 2);
    - ablation: ablation.datasets x ablation.variants of ``mla`` (Table 3).
    """
    out: list[Job] = []
    for d in cfg["datasets"]:
        for m in _with_reused(cfg["methods"]):
            out += _method_jobs(cfg, "train", d, m)
    for d in cfg["missing"]["datasets"]:
        for m in _with_reused(cfg["missing"]["methods"]):
            for r in cfg["missing"]["rates"]:
                out += _method_jobs(cfg, "missing", d, m, f"-{rate_tag(r)}", missing_rate=float(r))
    for d in cfg["ablation"]["datasets"]:
        for name, opts in sorted(cfg["ablation"]["variants"].items()):
            out.append(_job(cfg, "ablation", d, "mla", f"mla-{name}", options=tuple(sorted(opts.items()))))
    return out


def runs(cfg: dict) -> list[Run]:
    """Every run (job x seed) of the grid."""
    return [r for j in jobs(cfg) for r in j.runs]


def check_job_id(job_id: str) -> str:
    """``job_id`` if it has the shape ``<phase>/<dataset>/<tag>`` with plain names; an
    :class:`~mla.errors.UnsafeNameError` otherwise (an id with ``..`` or more parts never reaches a path)."""
    parts = job_id.split("/")
    if len(parts) != 3 or parts[0] not in PHASES or not all(is_name(p) for p in parts[1:]):
        raise UnsafeNameError(f"job id {job_id!r}: expected <phase>/<dataset>/<tag> with phase one of "
                              f"{', '.join(PHASES)} and dataset and tag plain names (lowercase letters, digits, "
                              f"'_' and '-'); `mla jobs` lists the grid's ids")
    return job_id


def job_by_id(cfg: dict, job_id: str) -> Job:
    """Look a job up by ``<phase>/<dataset>/<tag>``; unknown ids list a few valid ones, malformed
    ones (:func:`check_job_id`) are refused before the grid is searched."""
    check_job_id(job_id)
    for j in jobs(cfg):
        if j.id == job_id:
            return j
    valid = [j.id for j in jobs(cfg)]
    raise ValueError(f"unknown job {job_id!r}; valid jobs include: {', '.join(valid[:8])} ...")


def analysis_jobs(cfg: dict) -> dict[str, list[Job]]:
    """Per analysed dataset, the train jobs whose checkpoints the analysis compares."""
    by_id = {j.id: j for j in jobs(cfg)}
    return {
        d: [by_id[f"train/{d}/{m}"] for m in cfg["analysis"]["methods"]]
        for d in cfg["analysis"]["datasets"]
    }


def dvc_outputs(cfg: dict) -> list[str]:
    """What the DVC stage ``all`` declares (``dvc.yaml``, ``paper/dvc.yaml``): the data directories,
    the results directory and the report's files; every path of :func:`all_output_paths` lies in one."""
    data = []
    if any(catalog.dataset_info(d).family == "builtin" for d in cfg["datasets"]):
        data += ["data/raw/builtin", "data/features/builtin"]
    return data + real_paths.data_dirs(cfg) + [results_dir(cfg)] + report_files(cfg)


def all_output_paths(cfg: dict) -> list[str]:
    """Every output path the grid produces (data, runs, analyses, the report's files)."""
    builtin = [d for d in cfg["datasets"] if catalog.dataset_info(d).family == "builtin"]
    paths = [raw_dir(cfg, d) for d in builtin] + [feature_dir(cfg, d) for d in builtin] + real_paths.data_outputs(cfg)
    for j in jobs(cfg):
        paths += [j.job_dir, j.marker] + [r.run_dir for r in j.runs]
    paths += [analysis_dir(cfg, d) for d in cfg["analysis"]["datasets"]]
    return paths + report_files(cfg)
