"""A throw-away git clone of the working tree with an edited config, for end-to-end tests."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def clone_working_tree(dest: Path, configure: Callable[[dict], None]) -> Path:
    """Copy the tracked and unignored files to ``dest``, let ``configure`` edit
    ``config/config.yaml`` in place (a dict), and commit it all in a fresh repository."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for f in filter(None, files):
        if (ROOT / f).is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dest / f)
    cfg = yaml.safe_load((dest / "config/config.yaml").read_text())
    configure(cfg)
    (dest / "config/config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "tiny"]):
        subprocess.run(git + cmd, cwd=dest, capture_output=True, check=True)
    return dest


def shrink(cfg: dict, grid: dict, dataset: str, n_train: int, n_test: int, epochs: int) -> None:
    """Edit ``cfg`` in place to a tiny grid on one built-in dataset (seconds per job)."""
    cfg.update(grid)
    cfg["data"] = {dataset: {**cfg["data"][dataset], "n_train": n_train, "n_test": n_test}}
    cfg["features"]["shard_size"] = 32
    cfg["training"]["epochs"] = epochs


def project_fixture(name: str, configure: Callable[[dict], None]):
    """A module-scoped pytest fixture: a clone of the working tree (``clone_working_tree``) with
    ``configure`` applied to its config, removed after the module's tests."""
    @pytest.fixture(scope="module")
    def project(tmp_path_factory) -> Iterator[Path]:
        root = clone_working_tree(tmp_path_factory.mktemp(name) / "project", configure)
        yield root
        shutil.rmtree(root.parent, ignore_errors=True)

    return project
