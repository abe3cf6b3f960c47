"""Provenance's dirty flag: uncommitted tracked changes make the tree dirty, except in reports/,
whose tracked README block (reports/<name>/readme.md) the pipeline itself rewrites."""
from __future__ import annotations

import subprocess

from mla.provenance import static_provenance


def test_dirty_flag_ignores_the_pipelines_own_reports(tmp_path, monkeypatch):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    (tmp_path / "reports" / "builtin").mkdir(parents=True)
    (tmp_path / "reports" / "builtin" / "readme.md").write_text("old\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    subprocess.run(git + ["init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(git + ["add", "."], cwd=tmp_path, check=True)
    subprocess.run(git + ["commit", "-qm", "init"], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    provenance = static_provenance.__wrapped__  # the uncached function
    assert provenance()["git_dirty"] is False
    (tmp_path / "reports" / "builtin" / "readme.md").write_text("new numbers\n")
    assert provenance()["git_dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert provenance()["git_dirty"] is True
