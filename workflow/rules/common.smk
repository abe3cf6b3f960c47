# Helpers shared by the rules. The grid comes from mla.grid (no torch imported here); the config
# is composed ONCE here and handed to every job as a file, so the DAG and the jobs cannot disagree.
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, workflow.basedir)

from snakemake.settings.types import DeploymentMethod  # noqa: E402

from mla import config as mla_config, grid, real_paths  # noqa: E402

# The run's config (mla/config.py compose): config/config.yaml, then each --configfile (a complete
# config replaces what precedes it, an overlay is deep-merged over it), then --config key=value
# settings (merged the same way); validated once, a wrong key fails here naming it. Snakemake's own
# `config` dict is not used: it merges a complete --configfile into config/config.yaml's keys.
CFG = mla_config.compose(workflow.overwrite_configfiles, dict(workflow.config_settings.config))
# Jobs read exactly this config from a content-addressed file (.snakemake/mla-configs/<sha256>.yaml):
# the same settings give the same file whatever file names they came from. The shell commands
# name it (and the interpreter) through the globals MLA_CONFIG and PYTHON, never inside `params:` or
# an f-string: Snakemake's code trigger compares the rule's unformatted shell text and its params
# trigger the params' values, so neither sees this path; switching configs reruns only jobs whose
# params (the settings each one reads) or inputs changed (docs/configuration.md).
MLA_CONFIG = str(mla_config.write_resolved(CFG, Path(".snakemake", "mla-configs")))  # in the working directory
# Jobs run with the interpreter that runs Snakemake (however it was started: `uv run snakemake`,
# .venv/bin/snakemake, an activated environment), unless Snakemake deploys the conda environment.
CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
PYTHON = "python" if CONDA else sys.executable
# Run locally, at most as many cores' worth of jobs run at once as this machine has CPUs, whatever
# --cores says: the jobs are CPU-bound, and more processes than CPUs finish later, not sooner (here,
# 4 one-thread training jobs at once on 2 CPUs took 44 s, two after two 35 s). A cluster executor
# submits without this limit (Snakemake lifts the core limit when jobs go to nodes).
CPUS = len(os.sched_getaffinity(0))
if workflow.local_exec and (workflow.global_resources["_cores"].value or 0) > CPUS:
    print(f"--cores {workflow.global_resources['_cores'].value} on a machine with {CPUS} CPUs: at most {CPUS} "
          f"cores' worth of jobs run at once (workflow/rules/common.smk)", file=sys.stderr)
    workflow.global_resources["_cores"] = CPUS
# The project environment for `--software-deployment-method conda` (relative to workflow/rules/).
ENV = "../../environment.yml"
NAME = CFG["name"]
RES = grid.results_dir(CFG)
REP = grid.report_dir(CFG)
JOBS = {j.id: j for j in grid.jobs(CFG)}


def code(*patterns):
    """Source files a rule depends on, so that a code change reruns exactly its jobs."""
    base = Path(workflow.basedir)
    return sorted(str(p.relative_to(base)) for pat in patterns for p in base.glob(pat))


CODE_CONFIG = code("mla/config.py", "mla/config_schema.yaml", "mla/catalog.py", "mla/grid.py", "mla/real_paths.py")
CODE_DATA = CODE_CONFIG + code("mla/data/*.py")
CODE_FEATURES = CODE_CONFIG + code("mla/data/splits.py", "mla/features/*.py")
CODE_TRAIN = CODE_CONFIG + code(
    "mla/train.py", "mla/augment.py", "mla/batches.py", "mla/evaluate.py", "mla/fusion.py", "mla/missing.py",
    "mla/provenance.py", "mla/registry.py", "mla/models/*.py", "mla/methods/base.py", "mla/frozen.py",
    "mla/methods/__init__.py", "mla/features/store.py", "mla/checkpoint.py", "mla/devices.py", "mla/io.py",
)
CODE_ANALYSIS = CODE_TRAIN + code("mla/analysis/*.py", *(f"mla/methods/{m}.py" for m in CFG["analysis"]["methods"]))
CODE_REPORT = CODE_CONFIG + code("mla/report/*.py", "mla/analysis/gap.py", "mla/paper_tables.yaml")


CODE_WEIGHTS = CODE_CONFIG + code("mla/weights/*.py", "mla/models/*.py", "mla/registry.py", "mla/io.py")
# What `mla prepare` runs for every real dataset; each dataset's own module is added per job.
CODE_PREPARE = CODE_CONFIG + code(
    "mla/data/prepare.py", "mla/data/options.py", "mla/data/samples.py", "mla/data/splits.py",
    "mla/data/mmbt.py", "mla/features/*.py", "mla/io.py", "mla/acquire/official_splits.py",
    "mla/acquire/splitlists.py", "mla/acquire/sources.py", "mla/acquire/errors.py",
)


def job_of(phase, wildcards):
    return JOBS[f"{phase}/{wildcards.dataset}/{wildcards.tag}"]


def train_inputs(phase):
    """Inputs of a training job: its dataset's feature store, its method's code and the
    runs it reuses (late fusion assembles the unimodal runs; the missing-modality baselines
    train on their encoders' features, mla/frozen.py)."""

    def inputs(wildcards):
        job = job_of(phase, wildcards)
        files = [f"mla/methods/{job.method}.py"] + [f"mla/methods/{JOBS[n].method}.py" for n in job.needs]
        return {
            "features": grid.feature_dir(CFG, job.dataset),
            "runs": [JOBS[n].marker for n in job.needs],
            "weights": real_paths.weights_of(CFG, job.dataset),
            "code": CODE_TRAIN + code(*sorted(set(files))),
        }

    return inputs


def train_params(phase):
    """The config values a training job reads: a change reruns exactly the affected jobs."""

    def params(wildcards):
        job = job_of(phase, wildcards)
        # The feature settings are not here: they key the feature store's path, an input.
        keys = ("seeds", "split_seed", "val_fraction", "device", "threads")
        fingerprint = {k: CFG[k] for k in keys}
        fingerprint["training"] = mla_config.training_for(CFG, job.method)
        fingerprint.update({k: CFG.get(k) for k in ("precision", "channels_last") if k in CFG})
        fingerprint["model"] = mla_config.model_for(CFG, job.dataset)  # this dataset's encoders only
        fingerprint["method_options"] = mla_config.method_options_for(CFG, job.method, job.dataset)
        fingerprint["missing"] = CFG["missing"]["masking"] if job.missing_rate is not None else None
        return json.dumps(fingerprint, sort_keys=True)

    return params


# --- real datasets (workflow/rules/real_data.smk) ---------------------------------------------
REAL = real_paths.real_datasets(CFG)
DOWNLOADED = [d for d in REAL if real_paths.downloads(CFG, d)]
IN_PLACE = [d for d in REAL if not real_paths.downloads(CFG, d)]


def one_of(names):
    """A wildcard constraint matching exactly ``names`` (nothing when empty)."""
    return "|".join(names) if names else "(?!)"


def existing(paths):
    """The user-provided files among ``paths`` that exist: inputs once they are in place (a later
    change reruns the step), while the DAG still builds before they are (the step then fails
    naming the file)."""
    return [p for p in paths if Path(p).is_file()]


def sources_fingerprint(dataset):
    """The sources.yaml entries a dataset's acquisition follows (pins, layout), as a param: a
    changed pin refetches, an edited comment does not. Acquisition outputs are verified against
    pinned sha256, so they depend on no code file."""
    from mla.acquire.sources import load_sources

    src = load_sources()
    spec = {k: v for k, v in src["datasets"].get(dataset, {}).items() if k != "obtain"}  # prose
    lists = src["split_lists"].get(spec.get("split_lists", dataset), {})
    repos = {k: src["repositories"][k] for k in (lists.get("repository"), spec.get("repository")) if k}
    return json.dumps({"dataset": spec, "split_lists": lists, "repositories": repos}, sort_keys=True)


def acquire_args(wildcards):
    return real_paths.shell_args(real_paths.acquire_args(CFG, wildcards.dataset))


def acquire_inputs(wildcards):
    """The split lists (their ids) and, for a copy verified in place, the user's reference
    manifest and allow-missing listing where they exist."""
    d = wildcards.dataset
    extra = [] if real_paths.downloads(CFG, d) else [CFG["raw"][d].get("reference"), real_paths.allow_missing(CFG, d)]
    return {"splits": real_paths.split_dir(d), "user": existing([p for p in extra if p])}


def prepare_inputs(wildcards):
    """Lists, the acquisition manifest, the user's vocabulary/listing, and the code of `mla prepare`
    with the dataset's own module."""
    d = wildcards.dataset
    return {
        "splits": real_paths.split_dir(d),
        "raw": real_paths.raw_manifest(d),
        "user": existing(real_paths.user_files(CFG, d)),
        "code": CODE_PREPARE + code(real_paths.prepare_module_file(d)),
    }


def prepare_params(wildcards):
    """The config values `mla prepare` reads (workers excepted: the output does not depend on it)."""
    opts = real_paths.prepare_options(CFG, wildcards.dataset)
    opts.pop("workers", None)
    return json.dumps([opts, CFG["split_seed"], CFG["val_fraction"]], sort_keys=True)


def prepare_threads(wildcards):
    return int(real_paths.prepare_options(CFG, wildcards.dataset).get("workers", 1))


WEIGHTS = {Path(p).name.removesuffix(".pt"): spec for p, spec in real_paths.weights_used(CFG).items()}


def weights_inputs(wildcards):
    """The third-party checkpoint (once it exists) and the conversion code."""
    return {"source": existing([WEIGHTS[wildcards.name]["source"]]), "code": CODE_WEIGHTS}


def convert_args(wildcards):
    return real_paths.shell_args(real_paths.convert_args(WEIGHTS[wildcards.name]))


wildcard_constraints:
    dataset="[a-z0-9_]+",
    tag="[A-Za-z0-9_.-]+",
