# Helpers shared by the rules. The grid comes from mla.grid (no torch imported here), read
# from the same config file the jobs read, so the DAG and the jobs cannot disagree.
import json
import sys
from pathlib import Path

sys.path.insert(0, workflow.basedir)

from mla import config as mla_config, grid  # noqa: E402

CONFIG_FILE = workflow.overwrite_configfiles[-1] if workflow.overwrite_configfiles else "config/config.yaml"
CFG = mla_config.load(CONFIG_FILE)
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


CODE_CONFIG = code("mla/config.py", "mla/config_schema.yaml", "mla/catalog.py", "mla/grid.py")
CODE_DATA = CODE_CONFIG + code("mla/data/*.py")
CODE_FEATURES = CODE_CONFIG + code("mla/data/splits.py", "mla/features/*.py")
CODE_TRAIN = CODE_CONFIG + code(
    "mla/train.py", "mla/batches.py", "mla/evaluate.py", "mla/fusion.py", "mla/missing.py",
    "mla/provenance.py", "mla/registry.py", "mla/models/*.py", "mla/methods/base.py",
    "mla/methods/__init__.py", "mla/features/store.py",
)
CODE_ANALYSIS = CODE_TRAIN + code("mla/analysis/*.py")
CODE_REPORT = CODE_CONFIG + code("mla/report/*.py", "mla/analysis/gap.py", "mla/paper_tables.yaml")


def job_of(phase, wildcards):
    return JOBS[f"{phase}/{wildcards.dataset}/{wildcards.tag}"]


def train_inputs(phase):
    """Inputs of a training job: its dataset's feature store, its method's code and the
    runs it assembles (late fusion reuses the unimodal runs)."""

    def inputs(wildcards):
        job = job_of(phase, wildcards)
        files = [f"mla/methods/{job.method}.py"] + [f"mla/methods/{JOBS[n].method}.py" for n in job.needs]
        return {
            "features": grid.feature_dir(job.dataset),
            "runs": [JOBS[n].job_dir for n in job.needs],
            "code": CODE_TRAIN + code(*sorted(set(files))),
        }

    return inputs


def train_params(phase):
    """The config values a training job reads: a change reruns exactly the affected jobs."""

    def params(wildcards):
        job = job_of(phase, wildcards)
        keys = ("seeds", "split_seed", "val_fraction", "device", "threads", "features", "model", "training")
        fingerprint = {k: CFG[k] for k in keys}
        fingerprint["method_options"] = CFG["method_options"].get(job.method, {})
        fingerprint["missing"] = CFG["missing"]["masking"] if job.missing_rate is not None else None
        return json.dumps(fingerprint, sort_keys=True)

    return params


wildcard_constraints:
    dataset="[a-z0-9_]+",
    tag="[A-Za-z0-9_.-]+",
