"""The whole DAG on a tiny config in a temporary clone: Snakemake, then DVC, for real."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clone import project_fixture, shrink

TINY = {
    "seeds": [0, 1],
    "datasets": ["builtin_ait"],
    "methods": ["unimodal", "concat", "late_fusion", "mla"],
    "missing": {"datasets": ["builtin_ait"], "methods": ["late_fusion", "mla"], "rates": [0.5], "masking": "released"},
    "ablation": {"datasets": ["builtin_ait"], "variants": {"nohgm": {"hgm": False}}},
    "analysis": {"datasets": ["builtin_ait"], "methods": ["concat", "mla"], "seed": 0, "tsne_points": 20},
}


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    return env


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=900)
    if check and out.returncode != 0:
        logs = "".join(f"--- {p}\n{p.read_text()[-1500:]}" for p in sorted(cwd.glob("logs/**/*.log")))
        raise AssertionError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-3000:]}\n{logs[-6000:]}")
    return out


def snakemake(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "snakemake", *args], cwd, check)


def nothing_to_do(cwd: Path) -> bool:
    out = snakemake("-n", "all", cwd=cwd)
    return "nothing to be done" in (out.stdout + out.stderr).lower()


def tiny(cfg: dict) -> None:
    shrink(cfg, TINY, "builtin_ait", n_train=48, n_test=24, epochs=2)


project = project_fixture("clone", tiny)  # a git clone of the working tree with the tiny config


@pytest.fixture(scope="module")
def built(project: Path) -> Path:
    snakemake("--cores", "2", "all", cwd=project)
    return project


def test_dag_builds_the_report(built: Path):
    rep = built / "reports/builtin"
    for name in ("table1", "table2", "table3"):
        for ext in ("md", "csv", "html"):
            assert (rep / f"{name}.{ext}").stat().st_size > 0
    for name in ("report.html", "modality_gap.png", "training_curves.png", "metrics.json"):
        assert (rep / name).stat().st_size > 0
    assert "not run" in (rep / "table1.md").read_text()  # methods left out of this tiny grid
    run_dir = built / "results/builtin/missing/builtin_ait/mla-eta50/seed1"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["counts"]["test"] == 24 and metrics["missing"]["realised"]["test"] > 0
    assert (run_dir / "missing_masks.npz").exists()
    assert nothing_to_do(built)


def test_dvc_repro_records_and_snakemake_stays_done(built: Path):
    assert (built / ".dvc" / "config").exists(), "the repository ships an initialised DVC project"
    run([sys.executable, "-m", "dvc", "repro"], built)
    status = run([sys.executable, "-m", "dvc", "status", "dvc.yaml"], built).stdout
    assert "up to date" in status.lower(), status
    assert nothing_to_do(built)


def test_same_job_twice_gives_identical_metrics(built: Path):
    path = built / "results/builtin/train/builtin_ait/mla/seed0/metrics.json"
    first = path.read_bytes()
    run([sys.executable, "-m", "mla", "train", "--job", "train/builtin_ait/mla"], built)
    assert path.read_bytes() == first


def test_dvc_push_pull_touch_and_regenerated_report_is_identical(built: Path, tmp_path: Path):
    """A colleague's path (README "Sharing results"): push to a local remote, fresh clone,
    ``dvc pull``, ``snakemake --touch``; Snakemake has nothing to do; the report regenerated from
    the pulled results is byte-identical to the original. Last in the module: it commits dvc.lock,
    which changes the git commit that later runs would record."""
    dvc, git = [sys.executable, "-m", "dvc"], ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    remote = tmp_path / "remote"
    run(dvc + ["repro", "dvc.yaml"], built)     # nothing to do if the test above ran
    # dvc.lock and the report's README block (uncached by DVC) travel through git
    run(git + ["add", "dvc.lock", "reports/builtin/readme.md"], built)
    run(git + ["commit", "-qm", "dvc.lock", "--allow-empty"], built)
    # The shipped default remote is a sibling directory; --local keeps this override (and any
    # credentials) in .dvc/config.local, which git ignores.
    run(dvc + ["remote", "modify", "--local", "local", "url", str(remote)], built)
    run(dvc + ["push", "dvc.yaml"], built)
    colleague = tmp_path / "colleague"
    run(["git", "clone", "-q", str(built), str(colleague)], tmp_path)
    run(dvc + ["remote", "modify", "--local", "local", "url", str(remote)], colleague)
    run(dvc + ["pull", "dvc.yaml"], colleague)
    snakemake("--cores", "1", "--touch", "all", cwd=colleague)
    assert nothing_to_do(colleague)
    report = Path("reports/builtin")
    original = {p.name: p.read_bytes() for p in sorted((built / report).iterdir())}
    shutil.rmtree(colleague / report)
    snakemake("--cores", "2", "phase_report", cwd=colleague)
    regenerated = {p.name: p.read_bytes() for p in sorted((colleague / report).iterdir())}
    assert sorted(regenerated) == sorted(original)
    assert [n for n in original if regenerated[n] != original[n]] == []
