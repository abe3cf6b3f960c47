"""`mla fixture` and the walk-through of docs/try-real-data.md: a fixture copy is verified in place by
`mla acquire`, prepared by `mla prepare` and trained on by `mla train`; the errors a user meets on the
way name the setting that fixes them."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from mla import cli, config, grid
from mla.data.prepare import prepare
from mla.data.samples import MissingFilesError
from mla.fixtures.datasets import KS_GONE, MVSA, MVSA_TEST

ROOT = Path(__file__).resolve().parents[1]
PAPER = str(ROOT / "config" / "paper.yaml")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fixture(tmp_path: Path, dataset: str) -> Path:
    out = tmp_path / "fx" / dataset
    assert cli.main(["fixture", "--dataset", dataset, "--out", str(out), "--config", PAPER]) == 0
    return out


@pytest.mark.parametrize("dataset", ["cremad", "ks", "food101", "mvsa", "iemocap"])
def test_acquire_verifies_every_fixture_copy_against_its_pinned_lists(tmp_path, dataset):
    out = fixture(tmp_path, dataset)
    sources = yaml.safe_load((out / "sources.yaml").read_text())
    name = {"ks": "kinetics_sounds"}.get(dataset, dataset)
    for entry in sources["split_lists"][name]["files"].values():  # the fixture's lists, pinned
        path = out / "splits" / entry["name"]
        assert entry["sha256"] == digest(path)
        assert entry["records"] == len([line for line in path.read_text(encoding="utf-8-sig").splitlines() if line])
    args = ["acquire", "--dataset", dataset, "--sources", str(out / "sources.yaml"), "--lists", str(out / "splits"),
            "--root", str(out / "raw"), "--in-place", "--manifest", str(tmp_path / "manifest.json"), "--workers", "1"]
    if dataset == "ks":
        args += ["--allow-missing", str(out / "ks_unavailable.txt")]
    assert cli.main(args) == 0
    # the training config is valid and names this dataset's copy, lists' acceptance and the ks listing
    cfg = config.load(out / "train.yaml")
    assert cfg["datasets"] == [dataset] and cfg["raw"] == {dataset: {"path": str(out / "raw")}}
    assert cfg["prepare"][dataset]["verify_lists"] is False
    assert cfg["prepare"][dataset].get("allow_missing") == (str(out / "ks_unavailable.txt") if dataset == "ks" else None)
    assert [j.id for j in grid.jobs(cfg)][-2:] == [f"train/{dataset}/concat", f"train/{dataset}/mla"]
    files = json.loads((tmp_path / "manifest.json").read_text())["files"]
    on_disk = sorted(p.relative_to(out / "raw").as_posix() for p in (out / "raw").rglob("*") if p.is_file())
    assert files and {f["path"] for f in files} <= set(on_disk)  # the files the lists need, each hashed
    assert all(f["sha256"] == digest(out / "raw" / f["path"]) for f in files)


def test_walkthrough_prepare_and_train_on_the_mvsa_fixture(tmp_path, monkeypatch, capsys):
    out = fixture(tmp_path, "mvsa")
    monkeypatch.chdir(tmp_path)
    store = ["--dataset", "mvsa", "--raw", str(out / "raw"), "--splits", str(out / "splits"),
             "--out", "data/features/mvsa"]
    # without the fixture's sources file, acquire checks the lists against the official ones and says what to do
    assert cli.main(["acquire", "--dataset", "mvsa", "--lists", str(out / "splits"), "--root", str(out / "raw"),
                     "--in-place", "--manifest", "m.json"]) == 1
    assert "my_train_mvsa.txt: 9 records, expected 1555; these are not the official lists" in capsys.readouterr().err
    assert not Path("m.json").exists()
    # the paper's config checks the lists against the official ones, and says how to accept others
    assert cli.main(["prepare", "--config", PAPER, *store, "--vocab", str(out / "vocab.txt")]) == 1
    err = capsys.readouterr().err
    assert "my_train_mvsa.txt: 9 records, expected 1555; these are not the official lists" in err
    assert "--set prepare.mvsa.verify_lists=false" in err and not Path("data").exists()
    assert cli.main(["prepare", "--config", PAPER, *store, "--vocab", str(out / "vocab.txt"),
                     "--set", "prepare.mvsa.verify_lists=false"]) == 0
    assert cli.main(["prepare", "--config", str(out / "train.yaml"), *store]) == 0
    man = json.loads(Path("data/features/mvsa/manifest.json").read_text())
    n_train = len([s for s in MVSA if s not in MVSA_TEST])
    assert (man["counts"]["train"] + man["counts"]["val"], man["counts"]["test"]) == (n_train, len(MVSA_TEST))
    assert man["counts"]["val"] == 3 and man["lists_verified"] is False  # 34 % of 9, one per class

    assert cli.main(["train", "--config", str(out / "train.yaml"), "--job", "train/mvsa/mla"]) == 0
    metrics = json.loads(Path("results/fixture_mvsa/train/mvsa/mla/seed0/metrics.json").read_text())
    assert metrics["counts"] == {"train": 6, "val": 3, "test": 3} and metrics["epochs"] == 2
    # accuracy on 3 test samples is a multiple of 1/3
    assert round(metrics["test"]["multi"] * 3 / 100, 3) in (0.0, 1.0, 2.0, 3.0)


def test_missing_files_name_the_setting_for_a_partial_copy(tmp_path):
    out = fixture(tmp_path, "mvsa")
    (out / "raw" / "data" / "4198.jpg").unlink()
    cfg = yaml.safe_load((out / "train.yaml").read_text())
    with pytest.raises(MissingFilesError, match=r"(?s)1 of 12 input files are missing.*4198.jpg.*give lists that "
                                                r"name only the samples you have and set config key "
                                                r"prepare.mvsa.verify_lists: false"):
        prepare("mvsa", out / "raw", out / "splits", tmp_path / "store", cfg["prepare"]["mvsa"],
                split_seed=0, val_fraction=0.34)
    assert not (tmp_path / "store").exists()


def test_fixture_refuses_an_unknown_dataset_and_a_non_empty_directory(tmp_path, capsys):
    assert cli.main(["fixture", "--dataset", "builtin_av", "--out", str(tmp_path / "a"), "--config", PAPER]) == 1
    assert "no fixture for dataset 'builtin_av'; real datasets: cremad, ks, food101, mvsa, iemocap" in \
        capsys.readouterr().err
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "mine.txt").write_text("keep")
    assert cli.main(["fixture", "--dataset", "mvsa", "--out", str(tmp_path / "b"), "--config", PAPER]) == 1
    assert "exists and is not empty; give --out a new directory" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["mine.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # nothing half-written beside it


def test_ks_fixture_lists_its_absent_clip(tmp_path):
    out = fixture(tmp_path, "ks")
    assert KS_GONE in (out / "ks_unavailable.txt").read_text().splitlines()
    assert not list((out / "raw").rglob(f"{KS_GONE}.mp4"))
    assert KS_GONE in (out / "splits" / "KineticSound_my_train.txt").read_text()


def test_unreachable_download_host_fails_fast_and_says_how_to_place_the_files(tmp_path, capsys):
    """CREMA-D's download with its host refusing connections: one attempt, the host named, and the way
    round it (a Git LFS clone verified in place) spelled out."""
    import socket
    import time

    out = fixture(tmp_path, "cremad")
    with socket.socket() as s:  # a port nobody listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    assert cli.main(["acquire", "--dataset", "cremad", "--sources", str(out / "sources.yaml"), "--lists",
                     str(out / "splits"), "--root", str(tmp_path / "raw"), "--commit", "1" * 40,
                     "--base-url", f"http://127.0.0.1:{port}", "--retries", "5"]) == 1
    assert time.monotonic() - start < 10  # five retries with backoff would take 31 s
    err = capsys.readouterr().err
    assert f"mla acquire: error: network unreachable: 127.0.0.1:{port} (" in err
    assert f"acquire needs access to 127.0.0.1:{port}" in err
    assert ("or place the files yourself: clone the dataset's repository with Git LFS, then run mla acquire "
            f"--dataset cremad --in-place --root <clone> --manifest <file> --lists {out / 'splits'}") in err
