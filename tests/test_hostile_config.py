"""Hostile configs, names and paths: refused with one clear line, nothing written or deleted elsewhere.

Each test that tries to escape the project puts a sentinel directory (with a file) beside a tiny
project directory and checks that it survives and that nothing was created.
"""
from __future__ import annotations

import os
import re
import resource
import stat
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml

from mla import checkpoint, config, grid, io, safepaths
from mla.acquire.lockfile import ChecksumLock
from mla.acquire.manifest import write_manifest
from mla.errors import UnsafeNameError, UnsafePathError, UserError

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "config.yaml"
# From results/<name>/ablation/<dataset>/ (and from work/<name>/ablation/<dataset>/) six '..' leave the project.
ESCAPE = "x/../../../../../../victim"
ESCAPE_ID = f"ablation/builtin_av/mla-{ESCAPE}"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """``tmp/project`` with a copy of the built-in config, and the sentinel ``tmp/victim/keep.txt``."""
    root = tmp_path / "project"
    (root / "config").mkdir(parents=True)
    (root / "config" / "config.yaml").write_text(CONFIG.read_text())
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious\n")
    return root


def assert_untouched(project: Path, extra: tuple[str, ...] = ()) -> None:
    """The sentinel is intact and the project holds only its config (and ``extra`` files we wrote)."""
    victim = project.parent / "victim"
    assert sorted(p.name for p in victim.iterdir()) == ["keep.txt"]
    assert (victim / "keep.txt").read_text() == "precious\n"
    made = sorted(str(p.relative_to(project)) for p in project.rglob("*"))
    assert made == sorted(["config", "config/config.yaml", *extra])


def write_config(project: Path, name: str, edit) -> Path:
    cfg = yaml.safe_load(CONFIG.read_text())
    edit(cfg)
    path = project / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def mla_cli(project: Path, *args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    """``python -m mla ARGS`` run in ``project`` (as Snakemake runs it, from the project root)."""
    return subprocess.run([sys.executable, "-m", "mla", *args], cwd=project, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=120, **kw)


def assert_one_line_error(proc: subprocess.CompletedProcess, command: str, *culprits: str) -> str:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"mla {command}: error: "), proc.stderr
    for c in culprits:
        assert c in lines[0], (c, lines[0])
    return lines[0]


# --- names ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["..", ".", "x/../y", "a/b", ".hidden", "", "Nohgm", "a b", "x" * 101, "é",
                                  "-x", "a.b", "x\n", None, 3])
def test_unsafe_names_are_refused(name):
    assert not safepaths.is_name(name)
    with pytest.raises(UnsafeNameError, match="is not a safe name .* ablation.variants"):
        safepaths.check_name(name, "variant", "rename it in ablation.variants")


@pytest.mark.parametrize("name", ["nohgm", "mla-nohgm", "eta30", "0", "unimodal-audio-eta10", "x" * 100])
def test_plain_names_pass(name):
    assert safepaths.check_name(name, "variant", "") == name


def test_schema_names_use_the_same_pattern():
    assert config.schema()["$defs"]["name"]["pattern"] == safepaths.NAME_PATTERN


def test_traversing_variant_is_refused_when_the_config_loads(project):
    path = write_config(project, "hostile.yaml", lambda c: c["ablation"]["variants"].update({ESCAPE: {"hgm": False}}))
    with pytest.raises(config.ConfigError,
                       match=rf"config key ablation.variants: '{ESCAPE}' is not a safe name.*\(config from {path}\)"):
        config.load(path)
    with pytest.raises(config.ConfigError, match="ablation.variants: 'x/../../victim' is not a safe name"):
        config.load(CONFIG, ["ablation.variants={x/../../victim: {hgm: false}}"])
    assert_untouched(project, ("hostile.yaml",))


@pytest.mark.parametrize("key, value", [("name", "../x"), ("datasets", ["../builtin_av"]), ("methods", ["mla/.."]),
                                        ("method_options", {"../mla": {}}), ("data", {"a/b": {}})])
def test_every_name_in_the_config_is_checked(key, value):
    with pytest.raises(config.ConfigError, match=f"config key {key}"):
        config.validate({**config.load(CONFIG), key: value})


def test_grid_refuses_a_hostile_name_that_skipped_validation(project, monkeypatch):
    """A config dict built in code (not loaded) with a traversing variant: no job is made, so
    ``run_job`` never reaches a path."""
    from mla.train import run_job

    monkeypatch.chdir(project)
    cfg = config.load(CONFIG)
    cfg["ablation"]["variants"][ESCAPE] = {"hgm": False}
    with pytest.raises(UnsafeNameError, match=f"job tag of ablation/builtin_av 'mla-{ESCAPE}' is not a safe name"):
        grid.jobs(cfg)
    with pytest.raises(UnsafeNameError):
        run_job(cfg, ESCAPE_ID)
    assert_untouched(project)


@pytest.mark.parametrize("job_id", [ESCAPE_ID, "ablation/builtin_av/mla-x/../../victim", "../../victim",
                                    "train/builtin_av", "train/../mla", "other/builtin_av/mla", "train//mla"])
def test_malformed_job_ids_are_refused(job_id):
    with pytest.raises(UnsafeNameError, match="expected <phase>/<dataset>/<tag>"):
        grid.job_by_id(config.load(CONFIG), job_id)


# --- the CLI -------------------------------------------------------------------------------
def test_cli_refuses_a_traversing_job_id(project):
    proc = mla_cli(project, "train", "--job", "ablation/builtin_av/mla-x/../../victim", "--job", ESCAPE_ID)
    assert_one_line_error(proc, "train", "job id 'ablation/builtin_av/mla-x/../../victim'", "mla jobs")
    assert_untouched(project)


def test_cli_refuses_a_traversing_variant_in_the_config(project):
    write_config(project, "hostile.yaml", lambda c: c["ablation"]["variants"].update({ESCAPE: {"hgm": False}}))
    for args in (["--config", "hostile.yaml", "--job", "train/builtin_av/mla"],
                 ["--set", f"ablation.variants={{'{ESCAPE}': {{hgm: false}}}}", "--job", "train/builtin_av/mla"]):
        assert_one_line_error(mla_cli(project, "train", *args), "train", "ablation.variants", ESCAPE)
    assert_untouched(project, ("hostile.yaml",))


def test_job_work_directory_is_confined_even_for_a_job_made_in_code(project, monkeypatch):
    """checkpoint.JobWork checks its path itself: a Job built without the grid's name checks cannot
    create, lock or delete anything outside work/."""
    monkeypatch.chdir(project)
    cfg = config.load(CONFIG)
    job = grid.Job("ablation", "builtin_av", "mla", f"mla-{ESCAPE}", (0,),
                   f"results/builtin/ablation/builtin_av/mla-{ESCAPE}")
    assert checkpoint.job_work_dir(cfg, job).resolve() == (project.parent / "victim").resolve()  # the attack's target
    with pytest.raises(UnsafePathError, match=f"refusing to write or delete work/builtin/{ESCAPE_ID}: .* outside work"):
        checkpoint.JobWork(cfg, job)
    assert_untouched(project)


# --- confinement of writes and deletes ----------------------------------------------------
@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "project" / "work"
    r.mkdir(parents=True)
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "keep.txt").write_text("precious\n")
    return r


def test_remove_tree_removes_a_directory_inside_its_root(root):
    (root / "job" / "seed0").mkdir(parents=True)
    (root / "job" / "seed0" / "state.pt").write_bytes(b"x")
    safepaths.remove_tree(root / "job" / ".." / "job", root)  # '..' that stays inside is fine
    assert list(root.iterdir()) == []


def test_remove_tree_refuses_a_path_outside_its_root(root):
    victim = root.parent.parent / "victim"
    for path in (victim, root / ".." / ".." / "victim"):
        with pytest.raises(UnsafePathError, match=f"refusing to write or delete {path}: it resolves to {victim}, "
                                                  f"outside {root}"):
            safepaths.remove_tree(path, root)
    with pytest.raises(UnsafePathError, match="is the root .* itself"):
        safepaths.remove_tree(root, root)
    assert (victim / "keep.txt").read_text() == "precious\n"


def test_remove_tree_refuses_symlinks_out_of_and_inside_its_root(root):
    victim = root.parent.parent / "victim"
    (root / "job").mkdir()
    (root / "job" / "seed0").symlink_to(victim)  # a link planted where a run's state would be
    (root / "inner").mkdir()
    (root / "link").symlink_to(root / "inner")
    (root / "via").symlink_to(victim)
    with pytest.raises(UnsafePathError, match=f"{root / 'job' / 'seed0'}: it resolves to {victim}, outside {root}"):
        safepaths.remove_tree(root / "job" / "seed0", root)
    with pytest.raises(UnsafePathError, match="outside"):  # a linked parent directory
        safepaths.remove_tree(root / "via" / "keep.txt", root)
    with pytest.raises(UnsafePathError, match="is a symbolic link"):
        safepaths.remove_tree(root / "link", root)
    assert (victim / "keep.txt").read_text() == "precious\n" and (root / "inner").is_dir()


def test_discarded_run_state_behind_a_symlink_is_not_deleted(root):
    """RunWork discards a state written for another config with rmtree: not through a link out of work/."""
    victim = root.parent.parent / "victim"
    (victim / "fingerprint.json").write_text('{"config": "other"}')
    (root / "seed0").symlink_to(victim)
    with pytest.raises(UnsafePathError, match="outside"):
        checkpoint.RunWork(root / "seed0", {"config": "mine"}, root=root)
    assert sorted(p.name for p in victim.iterdir()) == ["fingerprint.json", "keep.txt"]


def test_atomic_directory_outside_its_root_creates_nothing(root):
    out = root / ".." / ".." / "elsewhere" / "run"
    with pytest.raises(UnsafePathError, match="outside"):
        with io.atomic_directory(out, root):
            pass
    assert not (root.parent.parent / "elsewhere").exists()
    with io.atomic_directory(root / "a" / "run", root) as tmp:
        (tmp / "f").write_text("x")
    assert (root / "a" / "run" / "f").read_text() == "x"


# --- YAML, numbers and bounds ----------------------------------------------------------------
def laughs(levels: int = 9) -> str:
    """The "billion laughs": level i is a list of ten aliases of level i-1, so level 9 expands to 10^9 strings."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def test_billion_laughs_fails_fast_with_bounded_memory(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(laughs())
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(config.ConfigError, match=f"config file {path}: more than 100000 values once its YAML aliases"):
        config.load(path)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert seconds < 5 and peak < 20 * 2**20, (seconds, peak)  # measured: 0.01 s, under 1 MiB


def test_billion_laughs_at_the_cli_under_a_memory_limit(project):
    """The whole process under RLIMIT_AS 1 GiB (the unbounded loader needed about 3 GB)."""
    (project / "laughs.yaml").write_text(laughs())
    limit = 2**30

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    start = time.perf_counter()
    proc = mla_cli(project, "jobs", "--config", "laughs.yaml", preexec_fn=cap)
    assert time.perf_counter() - start < 60
    assert_one_line_error(proc, "jobs", "laughs.yaml", "YAML aliases")


def test_recursive_alias_and_malformed_yaml_name_the_file(tmp_path):
    cases = {"cycle.yaml": ("a: &a [1, *a]\n", "a YAML alias contains itself"),
             "broken.yaml": ("a: [1, 2\nb: c\n", "not valid YAML at line 2, column 2"),
             "deep.yaml": ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
             "binary.yaml": ("a: \x01\n", "not valid YAML")}
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(config.ConfigError, match=f"config file {tmp_path / name}: {message}"):
            config.load(tmp_path / name)
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * config.MAX_BYTES + "\n")
    with pytest.raises(config.ConfigError, match=f"config file {big}: larger than"):
        config.load(big)


def test_aliases_within_the_bound_still_load_unshared(tmp_path):
    """paper.yaml shares recipes with aliases; what loads is an ordinary tree (no shared objects)."""
    cfg = config.load(ROOT / "config" / "paper.yaml")
    assert cfg["prepare"]["cremad"]["audio"] == cfg["prepare"]["ks"]["audio"]
    assert cfg["prepare"]["cremad"]["audio"] is not cfg["prepare"]["ks"]["audio"]


def _set(path: tuple, value):
    def edit(cfg: dict) -> None:
        node = cfg
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
    return edit


@pytest.mark.parametrize("path, value, message", [
    (("training", "optimizer", "lr"), float("nan"), "config key training.optimizer.lr: nan is not a finite number"),
    (("missing", "rates"), [0.1, float("inf")], "config key missing.rates.1: inf is not a finite number"),
    (("method_options", "mla", "alpha"), float("-inf"), "config key method_options.mla.alpha: -inf is not a finite"),
    (("training", "epochs"), 1.0e30, "config key training.epochs: 1e+30 is not an integer"),
    (("threads",), 3.0, "config key threads: 3.0 is not an integer"),
    (("seeds",), [0, 1.0], "config key seeds.1: 1.0 is not an integer"),
    (("data", "builtin_av", "n_train"), 1.0e3, "config key data.builtin_av.n_train: 1000.0 is not an integer"),
])
def test_non_finite_and_non_integer_values_name_the_key(tmp_path, path, value, message):
    cfg_path = write_config(tmp_path, "bad.yaml", _set(path, value))
    with pytest.raises(config.ConfigError, match=re.escape(message) + ".*" + re.escape(f"(config from {cfg_path})")):
        config.load(cfg_path)


@pytest.mark.parametrize("override, message", [
    ("training.epochs=3.0", "training.epochs: 3.0 is not an integer"),
    ("training.optimizer.lr=.nan", "training.optimizer.lr: nan is not a finite"),
    ("training.epochs=1000001", "training.epochs: 1000001 is greater than the maximum of 100000"),
    ("threads=5000", "threads: 5000 is greater than the maximum of 1024"),
    ("training.batch_size=10000000", "training.batch_size: 10000000 is greater than the maximum"),
    ("missing.rates=[1.0]", "missing.rates.0: 1.0 is greater than or equal to the maximum of 1"),
    ("val_fraction=1", "val_fraction: 1 is greater than or equal to the maximum of 1"),
    ("training.optimizer.momentum=1.0", "momentum: 1.0 is greater than or equal to the maximum of 1"),
    ("seeds=[4294967296]", "seeds.0: 4294967296 is greater than the maximum of 4294967295"),
    ("missing.rates=[0.101, 0.104]", "missing.rates: 0.104 is written as eta10 in paths, like 0.101"),
    ("missing.rates=[0.001]", "missing.rates: 0.001 is written as eta00"),
    ("ablation.variants={1: {hgm: false}}", "ablation.variants.1: keys must be strings"),
])
def test_overrides_are_checked_the_same_way(override, message):
    with pytest.raises(config.ConfigError, match=re.escape(message)):
        config.load(CONFIG, [override])


@pytest.mark.parametrize("args, culprits", [
    (["jobs", "--config", "nan.yaml"], ["nan.yaml", "training.optimizer.lr", "not a finite number"]),
    (["jobs", "--config", "int.yaml"], ["int.yaml", "training.epochs", "not an integer"]),
    (["jobs", "--config", "cycle.yaml"], ["cycle.yaml", "contains itself"]),
    (["jobs", "--config", "broken.yaml"], ["broken.yaml", "not valid YAML"]),
    (["jobs", "--config", "missing.yaml"], ["missing.yaml", "does not exist"]),
    (["jobs", "--set", "training.epochs=1.0e+30"], ["training.epochs", "not an integer"]),
    (["train", "--job", "ablation/builtin_av/mla-nope"], ["unknown job", "valid jobs include"]),
    (["analyze", "--dataset", "cremad"], ["--dataset 'cremad'", "analysis.datasets"]),
])
def test_cli_prints_one_line_for_every_hostile_input(project, args, culprits):
    write_config(project, "nan.yaml", _set(("training", "optimizer", "lr"), float("nan")))
    write_config(project, "int.yaml", _set(("training", "epochs"), 1.0e30))
    (project / "cycle.yaml").write_text("a: &a [1, *a]\n")
    (project / "broken.yaml").write_text("a: [1, 2\nb: c\n")
    command = args[0]
    assert_one_line_error(mla_cli(project, *args), command, *culprits)
    assert_untouched(project, ("nan.yaml", "int.yaml", "cycle.yaml", "broken.yaml"))


def test_debug_shows_the_traceback(project):
    (project / "cycle.yaml").write_text("a: &a [1, *a]\n")
    for proc in (mla_cli(project, "--debug", "jobs", "--config", "cycle.yaml"),
                 mla_cli(project, "jobs", "--config", "cycle.yaml", env={"MLA_DEBUG": "1"})):
        assert proc.returncode != 0
        assert "Traceback" in proc.stderr and "ConfigError: config file cycle.yaml" in proc.stderr


def test_user_errors_are_value_errors_too():
    """Callers that caught ValueError (the CLI did, common.smk may) still catch the new classes."""
    for cls in (config.ConfigError, UnsafeNameError, UnsafePathError):
        assert issubclass(cls, UserError) and issubclass(cls, ValueError)


# --- modes ---------------------------------------------------------------------------------
@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o002, 0o664, 0o775), (0o022, 0o644, 0o755),
                                                        (0o077, 0o600, 0o700)])
def test_outputs_follow_the_umask(tmp_path, umask, file_mode, dir_mode):
    old = os.umask(umask)
    try:
        assert io._umask() == umask
        with io.atomic_file(tmp_path / "metrics.json") as tmp:
            tmp.write_text("{}")
        with io.atomic_directory(tmp_path / "run") as tmp:
            (tmp / "log.jsonl").write_text("")
        work = checkpoint.RunWork(tmp_path / "work" / "seed0", {"job": "x"}, root=tmp_path / "work")
        work.save_state({"epoch": 1})
        write_manifest(tmp_path / "manifest.json", dataset="x", files=[], source={})  # acquisition's own writer
        ChecksumLock(tmp_path / "sha256.lock").record("f", "0" * 64, 1)
    finally:
        os.umask(old)

    def mode(p: Path) -> int:
        return stat.S_IMODE(p.stat().st_mode)

    assert mode(tmp_path / "metrics.json") == file_mode
    assert mode(tmp_path / "manifest.json") == file_mode and mode(tmp_path / "sha256.lock") == file_mode
    assert mode(tmp_path / "run") == dir_mode and mode(tmp_path / "run" / "log.jsonl") == file_mode
    assert mode(work.dir / "fingerprint.json") == file_mode and mode(work.state_path) == file_mode
    assert mode(work.dir) == dir_mode
