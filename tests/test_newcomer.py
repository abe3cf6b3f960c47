"""What a newcomer does: shrink the grid, switch configs, add a method, rerun (issue 11).

Config composition and method catalogs are checked in process against hand-computed values;
Snakemake is checked by dry runs in this checkout and by one tiny real run in a clone.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from clone import project_fixture, shrink
from mla import catalog, config, grid

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "config.yaml"
VENV_BIN = Path(sys.executable).parent


def snakemake(*args: str, cwd: Path = ROOT, exe: list[str] | None = None, env: dict | None = None):
    cmd = (exe or [sys.executable, "-m", "snakemake"]) + ["--workflow-profile", "none", *args]
    if env is None:
        env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)


def job_counts(text: str) -> dict[str, int]:
    block = text.split("Job stats:", 1)[1].strip().split("\n\n", 1)[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^\s*([a-z_]+)\s+(\d+)\s*$", block, re.M)}


def job_config(text: str) -> dict:
    """The config file the planned jobs read (``--config <path>`` in their shell commands)."""
    paths = set(re.findall(r" --config (\S+\.yaml)", text))
    assert len(paths) == 1, paths
    return yaml.safe_load(Path(ROOT, paths.pop()).read_text())


# ------------------------------------------------------------------ composing a config

def test_merge_deep_merges_mappings_and_replaces_lists():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": [3], "e": {"f": {"g": 1}}}
    out = config.merge(base, {"a": {"c": [9]}, "d": [], "e": {"f": {"h": 2}}, "new": 1})
    assert out == {"a": {"b": 1, "c": [9]}, "d": [], "e": {"f": {"g": 1, "h": 2}}, "new": 1}
    assert base["a"]["c"] == [1, 2]  # the base is not changed


def test_overlays_settings_and_overrides_compose(tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("seeds: [5]\nanalysis: {seed: 5}\ntraining: {epochs: 1}\n")
    cfg = config.compose([overlay], {"threads": 2, "missing": {"rates": ["0.5"]}}, ["training.batch_size=8"])
    assert cfg["seeds"] == [5] and cfg["threads"] == 2
    # merged: the overlay's one key and the override's, the rest from config/config.yaml
    assert cfg["training"] == {**yaml.safe_load(CONFIG.read_text())["training"], "epochs": 1, "batch_size": 8}
    assert cfg["missing"]["rates"] == [0.5]  # Snakemake's --config hands nested scalars over as strings
    assert cfg["missing"]["methods"] == config.read_file(config.DEFAULT_CONFIG)["missing"]["methods"]  # untouched
    # a complete config stands alone: nothing of config/config.yaml leaks into the paper's grid
    paper = config.compose([ROOT / "config" / "paper.yaml"])
    assert paper["data"] == {} and paper["model"]["encoders"] == {}
    assert config.load(overlay) == config.compose([overlay])  # `mla ... --config overlay.yaml` too


@pytest.mark.parametrize("files, settings, culprit", [
    ([], {"trainin": 3}, "unknown config key trainin"),
    (["training: {epocs: 1}\n"], None, "unknown config key training.epocs"),
    ([], {"seeds": "[x]"}, "config key seeds"),
])
def test_a_wrong_override_names_the_key(tmp_path, files, settings, culprit):
    paths = []
    for i, text in enumerate(files):
        paths.append(tmp_path / f"o{i}.yaml")
        paths[-1].write_text(text)
    with pytest.raises(config.ConfigError, match=re.escape(culprit)) as err:
        config.compose(paths, settings)
    assert ("o0.yaml" in str(err.value)) if files else ("--config" in str(err.value))


def test_a_misspelt_method_option_fails_when_the_config_loads():
    with pytest.raises(config.ConfigError) as err:
        config.load(CONFIG, ["method_options.mla.hbarr=batch"])
    msg = str(err.value)
    assert "method_options.mla.hbarr" in msg and "method mla has no option 'hbarr'" in msg
    assert "valid options: alpha, alpha_schedule, fusion, hbar, hgm, hgm_order" in msg
    with pytest.raises(config.ConfigError, match="method_options.mla.hbar: 'dataset' is not one of running, epoch, batch"):
        config.load(CONFIG, ["method_options.mla.hbar=dataset"])
    with pytest.raises(config.ConfigError, match="method_options.qmf.lam: 'big' is not a number"):
        config.load(CONFIG, ["method_options.qmf.lam=big"])
    with pytest.raises(config.ConfigError, match="ablation.variants.nohgm.hgm: 0 is not true or false"):
        config.load(CONFIG, ["ablation.variants.nohgm.hgm=0"])
    assert config.load(CONFIG, ["method_options.qmf.lam=1"])["method_options"]["qmf"]["lam"] == 1  # int for a number


def test_jobs_read_a_content_addressed_config(tmp_path):
    cfg = config.load(CONFIG)
    first = config.write_resolved(cfg, tmp_path)
    again = config.write_resolved(config.load(CONFIG, [f"seeds={cfg['seeds']}"]), tmp_path)  # the same settings
    assert first == again and first.name == hashlib.sha256(config.dump(cfg).encode()).hexdigest() + ".yaml"
    assert yaml.safe_load(first.read_text()) == cfg
    other = config.write_resolved(config.load(CONFIG, ["seeds=[0]"]), tmp_path)
    assert other != first and sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, other.name])


# ------------------------------------------------------------------ data kept apart

def test_builtin_data_are_keyed_by_the_settings_that_produce_them():
    cfg = config.load(CONFIG)
    gen = cfg["data"]["builtin_ait"]
    raw_key = hashlib.sha256(json.dumps(gen, sort_keys=True).encode()).hexdigest()[:12]
    assert grid.raw_dir(cfg, "builtin_ait") == f"data/raw/builtin/builtin_ait-{raw_key}"
    feat = {"generator": gen, "shard_size": cfg["features"]["shard_size"],
            "features": {m: cfg["features"][m] for m in ("audio", "image", "text")},
            "split_seed": cfg["split_seed"], "val_fraction": cfg["val_fraction"]}
    feat_key = hashlib.sha256(json.dumps(feat, sort_keys=True).encode()).hexdigest()[:12]
    assert grid.feature_dir(cfg, "builtin_ait") == f"data/features/builtin/builtin_ait-{feat_key}"

    def dirs(*overrides):
        c = config.load(CONFIG, overrides)
        return {d: (grid.raw_dir(c, d), grid.feature_dir(c, d)) for d in c["datasets"]}

    base = dirs()
    assert dirs("training.epochs=1", "seeds=[0]", "name=other") == base  # training settings: same data
    video = dirs("features.video.size=16")  # builtin_av only has video
    assert video["builtin_it"] == base["builtin_it"] and video["builtin_ait"] == base["builtin_ait"]
    assert video["builtin_av"][0] == base["builtin_av"][0] and video["builtin_av"][1] != base["builtin_av"][1]
    n = dirs("data.builtin_it.n_train=100")
    assert n["builtin_it"][0] != base["builtin_it"][0] and n["builtin_it"][1] != base["builtin_it"][1]
    split = dirs("split_seed=1")
    assert all(split[d][0] == base[d][0] and split[d][1] != base[d][1] for d in base)


# ------------------------------------------------------------------ methods are files

def test_methods_are_discovered_from_their_files_without_torch():
    probe = ("import sys; from mla import catalog, config, grid; config.load('config/config.yaml'); "
             "assert 'torch' not in sys.modules; print(' '.join(sorted(catalog.METHODS)))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    # independently: the files of mla/methods that assign a CATALOG at the top level
    files = sorted(p.stem for p in (ROOT / "mla" / "methods").glob("*.py")
                   if re.search(r"^CATALOG = \{", p.read_text(), re.M))
    assert out.stdout.split() == files and len(files) >= 10


def test_registered_name_equals_file_name_and_defaults_come_from_the_catalog():
    from mla.methods import METHODS

    assert set(METHODS.names()) == set(catalog.METHODS)
    for name in METHODS.names():
        cls = METHODS.get(name)
        assert Path(inspect.getfile(cls)).stem == name, f"method {name} is registered in {inspect.getfile(cls)}"
        entry = catalog.read_catalog(Path(inspect.getfile(cls)))
        assert cls.defaults == {k: v["default"] for k, v in entry["options"].items()}, name


def test_catalog_literal_and_option_checks(tmp_path):
    (tmp_path / "helper.py").write_text("X = 1\n")
    (tmp_path / "toy.py").write_text(
        "import torch\nCATALOG = {'reuses': None, 'options': {'k': {'default': 0.5}, 'n': {'default': 2},\n"
        "    'mode': {'default': 'a', 'choices': ['a', 'b']}, 'flag': {'default': False}}}\n")
    found = catalog.discover_methods(tmp_path)
    assert list(found) == ["toy"]  # the helper has no CATALOG; torch is never imported (not parsed as code)
    info = found["toy"]
    assert (info.per_modality, info.modality_counts, info.reuses, info.source) == (False, (2, 3), None, "mla/methods/toy.py")
    (tmp_path / "bad.py").write_text("N = 3\nCATALOG = {'options': {'k': {'default': N}}}\n")
    with pytest.raises(ValueError, match="bad.py:2: CATALOG must be a literal"):
        catalog.discover_methods(tmp_path)
    ok = {"k": 1, "n": 3, "mode": "b", "flag": True}
    catalog.METHODS["toy"] = info
    try:
        catalog.check_options("toy", ok, "method_options.toy")
        for bad, msg in (({"n": 2.5}, "n: 2.5 is not an integer"), ({"flag": 1}, "flag: 1 is not true or false"),
                         ({"n": True}, "n: True is not an integer"), ({"mode": "c"}, "mode: 'c' is not one of a, b"),
                         ({"kk": 1}, "has no option 'kk'; valid options: flag, k, mode, n")):
            with pytest.raises(ValueError, match=re.escape(msg)):
                catalog.check_options("toy", bad, "method_options.toy")
    finally:
        del catalog.METHODS["toy"]


# ------------------------------------------------------------------ outputs whole or not at all

def test_a_truncated_checkpoint_names_its_path_and_job(tmp_path):
    from mla import checkpoint

    job = grid.Job("train", "builtin_it", "concat", "concat", (0,), str(tmp_path / "concat"))
    path = tmp_path / "concat" / "seed0" / "checkpoint.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(checkpoint.torch_bytes({"w": [1, 2, 3]})[:40])  # cut short
    with pytest.raises(RuntimeError, match=f"job train/builtin_it/concat is not complete .*{grid.COMPLETE}"):
        checkpoint.read_checkpoint(path, job)
    Path(job.marker).write_text("{}")
    with pytest.raises(RuntimeError, match=re.escape(f"cannot read checkpoint {path} of job train/builtin_it/concat")):
        checkpoint.read_checkpoint(path, job)


def test_a_finished_job_drops_stale_seeds_and_writes_its_marker_last(tmp_path):
    from mla.train import mark_complete

    job = grid.Job("train", "builtin_it", "concat", "concat", (0, 2), str(tmp_path / "concat"))
    for s in (0, 1, 2, 7):
        (tmp_path / "concat" / f"seed{s}").mkdir(parents=True)
    mark_complete(job, root=tmp_path)  # deletes stay inside their root (results/ in a real run)
    assert sorted(p.name for p in (tmp_path / "concat").iterdir()) == [grid.COMPLETE, "seed0", "seed2"]
    assert json.loads(Path(job.marker).read_text()) == {"job": "train/builtin_it/concat", "seeds": [0, 2]}


# ------------------------------------------------------------------ Snakemake, dry runs here

def test_config_settings_and_overlays_change_the_planned_jobs_and_their_settings(tmp_path):
    out = snakemake("-n", "-F", "-p", "all", "--config", "seeds=[0]", "datasets=[builtin_ait]",
                    "ablation={datasets: [builtin_ait]}", "analysis={datasets: [builtin_ait]}")
    assert out.returncode == 0, out.stderr[-3000:]
    # builtin_ait: 3 unimodal + 9 other methods; missing: (3 unimodal + the missing methods) x the rates
    default = config.read_file(config.DEFAULT_CONFIG)["missing"]
    n_missing = (3 + len(default["methods"])) * len(default["rates"])
    assert job_counts(out.stdout) == {"generate_builtin": 1, "features_builtin": 1, "train": 12,
                                      "train_missing": n_missing, "train_ablation": 1, "analyze": 1, "report": 1,
                                      "all": 1, "total": 18 + n_missing}
    cfg = job_config(out.stdout)
    assert (cfg["seeds"], cfg["datasets"], cfg["analysis"]["methods"]) == ([0], ["builtin_ait"], ["concat", "mla"])
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("training: {epochs: 1}\nmissing: {rates: [0.5]}\n")
    out = snakemake("-n", "-F", "-p", "all", "--configfile", str(overlay))
    assert out.returncode == 0, out.stderr[-3000:]
    assert job_counts(out.stdout)["train_missing"] == 3 + len(default["methods"])  # one rate
    cfg = job_config(out.stdout)
    default_batch = config.read_file(config.DEFAULT_CONFIG)["training"]["batch_size"]  # merged, not replaced
    assert cfg["training"]["epochs"] == 1 and cfg["training"]["batch_size"] == default_batch
    assert cfg["missing"]["rates"] == [0.5]


def test_a_wrong_setting_stops_snakemake_naming_the_key(tmp_path):
    out = snakemake("-n", "all", "--config", "trainin=3")
    assert out.returncode != 0 and "unknown config key trainin" in out.stdout + out.stderr
    overlay = tmp_path / "typo.yaml"
    overlay.write_text("method_options: {mla: {hbarr: batch}}\n")
    out = snakemake("-n", "all", "--configfile", str(overlay))
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "method mla has no option 'hbarr'" in text and "typo.yaml" in text


def test_the_venv_snakemake_plans_without_the_venv_on_path():
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if Path(p) != VENV_BIN)
    out = snakemake("-n", "-F", "-p", "all", exe=[str(VENV_BIN / "snakemake")], env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"{sys.executable} -m mla train --config " in out.stdout  # the interpreter that runs Snakemake


def test_the_old_argument_order_fails_understandably():
    """`--configfile` takes several files, so a target after it is read as one; the root file `all`
    that hid this is gone, and Snakemake says which file it could not find."""
    out = snakemake("-n", "--configfile", "config/paper.yaml", "all")
    assert out.returncode != 0 and "No such file or directory: 'all'" in out.stdout + out.stderr


# ------------------------------------------------------------------ one tiny real run in a clone

SMALL = {"seeds": [0], "datasets": ["builtin_it"], "methods": ["concat", "mla"],
         "missing": {"datasets": [], "methods": [], "rates": [0.5], "masking": "released"},
         "ablation": {"datasets": [], "variants": {"nohgm": {"hgm": False}}},
         "analysis": {"datasets": [], "methods": ["concat", "mla"], "seed": 0, "tsne_points": 20}}
ODD = "t$(touch X) 'q\" s.yaml"  # shell metacharacters, quotes and a space in the config's file name


def small(cfg: dict) -> None:
    shrink(cfg, SMALL, "builtin_it", n_train=40, n_test=16, epochs=1)
    cfg["data"] = {"builtin_it": cfg["data"]["builtin_it"]}


project = project_fixture("newcomer", small)


def plain_env() -> dict:
    """No virtual environment on PATH, none activated."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if Path(p) != VENV_BIN)
    return env


@pytest.fixture(scope="module")
def ran(project: Path) -> Path:
    """The whole tiny DAG run by .venv/bin/snakemake, with an overlay whose file name is hostile."""
    (project / ODD).write_text("name: tiny\n")
    out = snakemake("--cores", "2", "all", f"--configfile={ODD}", cwd=project,
                    exe=[str(VENV_BIN / "snakemake")], env=plain_env())
    logs = "".join(p.read_text()[-1500:] for p in project.glob("logs/**/*.log"))
    assert out.returncode == 0, out.stderr[-3000:] + logs[-3000:]
    return project


def dry(project: Path, *args: str) -> str:
    out = snakemake("-n", *args, cwd=project)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout + out.stderr


def test_a_hostile_config_file_name_runs_nothing_but_the_jobs(ran: Path):
    assert not (ran / "X").exists() and not any(ran.rglob("X"))
    assert json.loads((ran / "results/tiny/train/builtin_it/mla" / grid.COMPLETE).read_text())["seeds"] == [0]
    assert "Nothing to be done" in dry(ran, "all", f"--configfile={ODD}")


def test_switching_configs_and_back_reruns_nothing(ran: Path):
    (ran / "same.yaml").write_text("name: tiny\n")  # the same settings under another file name
    assert "Nothing to be done" in dry(ran, "all", "--configfile=same.yaml")
    (ran / "other.yaml").write_text("name: tiny\ndata: {builtin_it: {n_train: 32}}\n")
    assert job_counts(dry(ran, "phase_data", "--configfile=other.yaml"))["total"] == 3  # its own data
    out = snakemake("--cores", "2", "phase_data", "--configfile=other.yaml", cwd=ran)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Nothing to be done" in dry(ran, "all", f"--configfile={ODD}")  # back: the first data untouched
    assert "Nothing to be done" in dry(ran, "phase_data", "--configfile=other.yaml")
    # Another config file path in every shell command, yet only the jobs that read the changed
    # setting rerun: the path is no part of a rule's code or params (docs/configuration.md).
    counts = job_counts(dry(ran, "all", f"--configfile={ODD}", "--config", "method_options={mla: {alpha: 0.2}}"))
    assert counts == {"train": 1, "report": 1, "all": 1, "total": 3}, counts


def test_a_directory_without_its_marker_is_rerun(ran: Path):
    marker = ran / "results/tiny/train/builtin_it/concat" / grid.COMPLETE
    saved = marker.read_bytes()
    marker.unlink()  # the directory and its seed stay, as after a failed or interrupted job
    try:
        counts = job_counts(dry(ran, "all", f"--configfile={ODD}"))
        assert counts == {"train": 1, "report": 1, "all": 1, "total": 3}, counts
    finally:
        marker.write_bytes(saved)


def test_a_new_method_is_one_file_and_one_config_line(ran: Path):
    src = (ran / "mla/methods/concat.py").read_text()
    new = src.replace('@METHODS.register("concat")', '@METHODS.register("concat2")').replace("class Concat(", "class Concat2(")
    assert new != src
    (ran / "mla/methods/concat2.py").write_text(new)
    (ran / "with_new.yaml").write_text("name: tiny\nmethods: [concat, mla, concat2]\n")
    try:
        out = dry(ran, "all", "--configfile=with_new.yaml")
        assert job_counts(out) == {"train": 1, "report": 1, "all": 1, "total": 3}, out[-2000:]
        assert "train/builtin_it/concat2" in out
    finally:
        (ran / "mla/methods/concat2.py").unlink()


# ------------------------------------------------------------------ DVC's everyday commands

def test_scores_keep_only_our_means():
    from mla.report.scores import scores

    cell = lambda mean: {"mean": mean, "n": 2, "std": 0.5}  # noqa: E731
    metrics = {
        "config": "builtin", "std": "sample standard deviation ...",
        "table1": {"d/ours": {"multi": {"mla": cell(80.0), "sum": None}, "audio": {"mla": cell(50.0)}},
                   "d/paper": {"multi": {"mla": 79.7}}, "d/diff": {"multi": {"mla": 0.3}}},
        "table2": {"d/ours": {"mla": {"10%": cell(70.0), "20%": None}, "cca": {"10%": None}}},
        "table3": {"d/ours": {"multi": {"none": cell(60.0), "hgm_df": cell(61.0)}}},
        "modality_gap": {"d/ours": {"mean": {"concat": cell(1.2), "mla": cell(0.9)}, "audio-text": {"mla": cell(0.8)}},
                         "d/paper": {"text-vision": {"mla": 0.94}}},
        "claims": {"a": {"verdict": "holds"}},
    }
    assert scores(metrics) == {"table1": {"d": {"mla": 80.0}}, "table2": {"d": {"mla": {"10%": 70.0}}},
                               "table3": {"d": {"none": 60.0, "hgm_df": 61.0}},
                               "modality_gap": {"d": {"concat": 1.2, "mla": 0.9}}}


def dvc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    return subprocess.run([str(VENV_BIN / "dvc"), *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def test_dvc_metrics_params_and_plots_are_quiet_and_clean(project: Path):
    from mla.report.scores import write_scores

    out_dir = project / "reports" / "builtin"  # as after the first README command
    out_dir.mkdir(parents=True, exist_ok=True)
    write_scores({"table1": {"builtin_av/ours": {"multi": {"mla": {"mean": 71.25}}}}}, out_dir)
    shown = dvc("metrics", "show", cwd=project)
    assert shown.returncode == 0, shown.stderr
    assert "WARNING" not in shown.stderr + shown.stdout and "failed" not in (shown.stderr + shown.stdout).lower()
    assert "reports/builtin/scores.json" in shown.stdout and "71.25" in shown.stdout
    assert "paper" not in shown.stdout and "verdict" not in shown.stdout
    params = dvc("params", "diff", "--all", cwd=project)
    assert params.returncode == 0 and "failed" not in (params.stderr + params.stdout).lower(), params.stderr
    assert "params.yaml" in params.stdout and "config/config.yaml" in params.stdout
    dvc("plots", "show", cwd=project)  # may report missing figures; must write nowhere git sees
    status = subprocess.run(["git", "status", "--porcelain"], cwd=project, capture_output=True, text=True).stdout
    assert "dvc_plots" not in status
