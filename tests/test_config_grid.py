"""Config validation, the registries and the grid function (no torch)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mla import catalog, config, grid
from mla.registry import Registry
from dvc_stage import assert_covers_the_grid, stage_all

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "config.yaml"


def test_default_config_is_valid_and_named():
    cfg = config.load(CONFIG)
    assert cfg["name"] == "builtin"
    for key in ("seeds", "datasets", "methods"):
        assert isinstance(cfg[key], list)


@pytest.mark.parametrize(
    "override, culprit",
    [
        ("training.epochs=ten", "training.epochs"),
        ("training.epocs=3", "training.epocs"),
        ("bogus=1", "bogus"),
        ("method_options.mla.hgm=[1]", "method_options.mla.hgm"),  # checked against mla's CATALOG
        ("method_options.mla.hbarr=batch", "method_options.mla.hbarr"),
        ("seeds=3", "seeds"),
        ("missing.masking=random", "missing.masking"),
    ],
)
def test_config_errors_name_the_key(override, culprit):
    with pytest.raises(config.ConfigError, match=re.escape(culprit)):
        config.load(CONFIG, [override])


def test_unknown_dataset_or_method_lists_valid_names():
    with pytest.raises(config.ConfigError, match="valid names: builtin_ait, builtin_av, builtin_it"):
        config.load(CONFIG, ["datasets=[cremad_typo]"])
    with pytest.raises(config.ConfigError, match="valid names: .*concat.*mla"):
        config.load(CONFIG, ["methods=[mla, magic]"])


def test_override_of_missing_section_is_an_error(tmp_path):
    with pytest.raises(config.ConfigError, match="unknown config key nope .*--set nope.deeper.x=1"):
        config.load(CONFIG, ["nope.deeper.x=1"])
    with pytest.raises(config.ConfigError, match="config key seeds is not a section"):
        config.load(CONFIG, ["seeds.x=1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(config.ConfigError, match="mapping"):
        config.load(bad)


def test_registry_lists_valid_names():
    reg = Registry("widget")
    reg.register("a")(dict)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("a")(dict)
    with pytest.raises(KeyError, match="unknown widget 'b'; valid names: a"):
        reg.create("b")


def test_grid_jobs_cover_tables_and_are_unique():
    cfg = config.load(CONFIG)
    jobs = grid.jobs(cfg)
    ids = [j.id for j in jobs]
    assert len(ids) == len(set(ids))
    # Table 1: every dataset x method (unimodal once per modality).
    for d in cfg["datasets"]:
        mods = catalog.dataset_info(d).modalities
        for m in mods:
            assert f"train/{d}/unimodal-{m}" in ids
        assert f"train/{d}/concat" in ids and f"train/{d}/mla" in ids
    # Table 2 and 3.
    rates = {j.missing_rate for j in jobs if j.phase == "missing"}
    assert rates == set(cfg["missing"]["rates"])
    assert all(dict(j.options) == {"hgm": False} for j in jobs if j.phase == "ablation")
    runs = grid.runs(cfg)
    assert len(runs) == len(jobs) * len(cfg["seeds"])
    assert len({r.run_dir for r in runs}) == len(runs)


def test_dvc_stage_declares_every_output_of_the_grid():
    cfg = config.load(CONFIG)
    stage = stage_all(ROOT / "dvc.yaml")
    assert_covers_the_grid(cfg, stage)
    assert stage["cmd"] == "snakemake --cores all all --configfile=params.yaml"
    assert not (ROOT / "all").exists()  # targets go before --configfile (Snakefile header)
    assert stage["params"] == [{"params.yaml": None}, {"config/config.yaml": None}]  # every parameter of both
    # params.yaml restates the default config: `dvc repro` and `snakemake all` run the same jobs
    assert config.compose([ROOT / "params.yaml"]) == cfg
    assert list(yaml.safe_load((ROOT / "dvc.yaml").read_text())) == ["stages"]  # ${name}: params.yaml
    assert {"Snakefile", "workflow", "mla"} <= set(stage["deps"])


def test_job_lookup_errors_list_jobs():
    cfg = config.load(CONFIG)
    with pytest.raises(ValueError, match="valid jobs include: train/builtin_av/unimodal-audio"):
        grid.job_by_id(cfg, "train/builtin_av/nothing")


def test_local_runs_use_at_most_the_cpus_present():
    """`--cores` above the CPUs present is lowered to them for local runs (workflow/rules/common.smk)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    out = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "64", "all"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    cpus = len(os.sched_getaffinity(0))
    assert f"--cores 64 on a machine with {cpus} CPUs: at most {cpus} cores' worth of jobs" in out.stderr
