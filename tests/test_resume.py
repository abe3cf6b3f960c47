"""Fault injection on real processes: SIGKILL a training job, SIGKILL Snakemake, fill the disk.

One tiny clone (builtin_it, 2 seeds x 3 epochs, jobs concat and mla); its data are built once
by Snakemake. The reference is the mla job run once without interruption; every interrupted
and resumed run must end with the same bytes.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mla import cli

from clone import clone_working_tree
from test_pipeline import _env, run, snakemake

MLA = "results/builtin/train/builtin_it/mla"
CONCAT = "results/builtin/train/builtin_it/concat"
STATE = "work/builtin/train/builtin_it/mla/seed{}/state.pt"
EPOCHS = 3
TRAIN_MLA = [sys.executable, "-m", "mla", "train", "--job", "train/builtin_it/mla"]
PLAIN = ("--workflow-profile", "none")  # plain-text Snakemake output


def tiny(cfg: dict) -> None:
    cfg.update(seeds=[0, 1], datasets=["builtin_it"], methods=["concat", "mla"],
               missing={"datasets": [], "methods": ["mla"], "rates": [0.5], "masking": "released"},
               ablation={"datasets": [], "variants": {}},
               analysis={"datasets": [], "methods": ["concat", "mla"], "seed": 0, "tsne_points": 20})
    cfg["data"] = {"builtin_it": {**cfg["data"]["builtin_it"], "n_train": 128, "n_test": 32}}
    cfg["features"]["shard_size"] = 64
    cfg["training"]["epochs"] = EPOCHS
    cfg["save_state_every_s"] = 0  # a state after every epoch: the kills below land between any two


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = clone_working_tree(tmp_path_factory.mktemp("resume") / "project", tiny)
    snakemake(*PLAIN, "--cores", "2", "phase_data", cwd=root)
    yield root
    shutil.rmtree(root.parent, ignore_errors=True)


def run_files(job_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(job_dir)): p.read_bytes() for p in sorted(job_dir.rglob("*"))
            if p.is_file() and p.name not in ("provenance.json", ".snakemake_timestamp")}  # wall time, host


@pytest.fixture(scope="module")
def reference(project: Path) -> dict:
    """The mla job's files from one uninterrupted run, and its number of trained epochs."""
    out = run(TRAIN_MLA, project).stdout
    files = run_files(project / MLA)
    shutil.rmtree(project / MLA)
    assert not (project / "work/builtin/train/builtin_it/mla").exists(), "work/ is cleaned when the job ends"
    return {"files": files, "epochs": out.count(" state saved")}


def kill_when(path: Path, proc: subprocess.Popen, group: bool = False) -> None:
    """SIGKILL ``proc`` (its whole process group if ``group``) once ``path`` exists."""
    deadline = time.monotonic() + 300
    while not path.exists():
        assert proc.poll() is None, f"{proc.args} ended before {path} appeared"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)
    if group:
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        proc.kill()
    proc.wait()
    while group:  # until every process of the group (Snakemake's job shells too) is gone
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)


def job_counts(out: str) -> dict[str, int]:
    """Snakemake's "Job stats" table (rule -> jobs)."""
    counts = {}
    for line in out[out.index("Job stats:"):].splitlines()[3:]:
        rule, _, n = line.partition(" ")
        if not n.strip().isdigit() or rule == "total":
            break
        counts[rule] = int(n)
    return counts


def killed_epoch(project: Path) -> int:
    epoch = torch.load(project / STATE.format(1), weights_only=True)["epoch"]
    assert 1 <= epoch < EPOCHS, f"killed after epoch {epoch} of {EPOCHS}: no run was cut short"
    return epoch


def assert_same_run(project: Path, reference: dict) -> None:
    files = run_files(project / MLA)
    assert files.keys() == reference["files"].keys()
    for name, data in files.items():  # metrics.json, log.jsonl, checkpoint.pt, ... byte for byte
        assert data == reference["files"][name], name
    for seed in (0, 1):
        a = torch.load(project / MLA / f"seed{seed}/checkpoint.pt", weights_only=True)["state_dict"]
        assert "P" in a and "step" in a  # MLA's projection and step counter travel with the model
    assert not list((project / "results").rglob(".*tmp-*")), "a temporary directory was left behind"


def test_killed_training_job_resumes_to_the_same_result(project: Path, reference: dict):
    with open(project / "killed.log", "w") as log:
        proc = subprocess.Popen(TRAIN_MLA, cwd=project, env=_env(), stdout=log, stderr=subprocess.STDOUT)
        kill_when(project / STATE.format(1), proc)
    k = killed_epoch(project)
    assert (project / MLA / "seed0/metrics.json").exists()  # seed 0 was published before the kill
    shutil.rmtree(project / MLA)  # what Snakemake does to a failed job's output before rerunning it

    out = run(TRAIN_MLA, project).stdout
    assert "seed 0: finished before, restored from work/" in out
    assert f"seed 1: resumed from epoch {k} (" in out
    trained = out.count(" state saved")
    assert trained == EPOCHS - k < reference["epochs"] == 2 * EPOCHS
    assert_same_run(project, reference)
    assert not (project / "work/builtin/train/builtin_it/mla").exists()


def test_killed_snakemake_reruns_only_the_unfinished_job(project: Path, reference: dict):
    """SIGKILL to Snakemake's process group (Snakemake and the running job, as a crash or the
    OOM killer would) while the mla job trains seed 1; concat and the data jobs had finished.
    Recovery as Snakemake documents it: ``--unlock`` (a killed Snakemake leaves its lock), then
    ``--rerun-incomplete`` (without it Snakemake refuses to touch the killed job's output)."""
    shutil.rmtree(project / "results/builtin/train", ignore_errors=True)
    with open(project / "snakemake-killed.log", "w") as log:  # one job at a time: concat, then mla
        proc = subprocess.Popen([sys.executable, "-m", "snakemake", *PLAIN, "--cores", "1", "phase_train",
                                 "--prioritize", f"{CONCAT}/.complete"], cwd=project, env=_env(), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        kill_when(project / STATE.format(1), proc, group=True)
    k = killed_epoch(project)
    assert (project / CONCAT / "seed1/metrics.json").exists()

    finished = [project / CONCAT, project / "data", project / "logs"]
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for d in finished for p in sorted(d.rglob("*"))
              if p.is_file() and p.name != "mla.log"}
    snakemake("--unlock", cwd=project)
    out = snakemake(*PLAIN, "--cores", "1", "--rerun-incomplete", "phase_train", cwd=project)
    out = out.stdout + out.stderr
    assert job_counts(out) == {"train": 1, "phase_train": 1}  # no data job, one training job ...
    assert f"output: {MLA}/.complete\n" in out and f"output: {CONCAT}/.complete\n" not in out  # ... the killed one
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in before}
    assert after == before, "a finished job's files were rewritten"
    log = (project / "logs/builtin/train/builtin_it/mla.log").read_text()
    assert "seed 0: finished before" in log and f"seed 1: resumed from epoch {k} (" in log
    assert log.count(" state saved") == EPOCHS - k
    assert_same_run(project, reference)


def test_unwritable_output_directory_is_named_before_training(project: Path, monkeypatch, capsys):
    """Real: ``results`` is a regular file, so no directory can be made under it (chmod would
    not stop root). The check comes before the data are loaded, so this runs in-process."""
    monkeypatch.chdir(project)
    results = project / "results"
    results.rename(project / "results.aside")
    try:
        results.write_text("not a directory\n")
        assert cli.main(["train", "--job", "train/builtin_it/mla"]) == 1
    finally:
        results.unlink()
        (project / "results.aside").rename(results)
    assert capsys.readouterr().err == (
        "mla train: error: [Errno 20] Not a directory: 'results/builtin/train/builtin_it'\n")


def test_full_disk_names_the_file_and_leaves_no_partial_state(project: Path):
    """Real ENOSPC: ``work/`` is a 32 KiB tmpfs, too small for the first epoch's state.
    Needs ``mount`` (root with CAP_SYS_ADMIN); tests/test_checkpoint.py simulates the same
    at the write call everywhere else."""
    work = project / "work"
    work.mkdir(exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", str(work)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)")
    try:
        out = run(TRAIN_MLA, project, check=False)
        left = sorted(str(p.relative_to(work)) for p in work.rglob("*") if p.is_file())
    finally:
        subprocess.run(["umount", str(work)], check=True)
    assert out.returncode == 1
    path = STATE.format(0)
    assert f"mla train: error: [Errno 28] cannot write {path}: No space left on device" in out.stderr
    assert left == ["builtin/train/builtin_it/mla/.lock", "builtin/train/builtin_it/mla/seed0/fingerprint.json"]
