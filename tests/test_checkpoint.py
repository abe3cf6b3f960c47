"""Resumable training state (mla/checkpoint.py): every method resumes to the uninterrupted result."""
from __future__ import annotations

import errno
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from mla import checkpoint
from mla.checkpoint import JobWork, RunWork
from mla.train import train_run
from tiny import one_thread, tiny_config, tiny_dataset, training_jobs  # noqa: F401 (autouse fixture)

ROOT = Path(__file__).resolve().parents[1]
CFG = tiny_config(ROOT)
DS = tiny_dataset()


class Killed(BaseException):
    """Stands in for SIGKILL right after a save: nothing after it runs."""


def kill_after_saving(work: RunWork, epoch: int) -> None:
    save = work.save_state

    def save_then_die(state: dict) -> None:
        save(state)
        if state["epoch"] == epoch:
            raise Killed

    work.save_state = save_then_die


@pytest.mark.parametrize("job", training_jobs(CFG), ids=lambda j: j.tag)
def test_resumed_run_equals_uninterrupted_run(job, tmp_path):
    """Kill after epoch 1 of 3, resume in a fresh RunWork: the same metrics, log and selected state.

    Covers each method's own state (MLA's P and step, QMF's history, OGM-GE's epoch counter and
    its Gaussian noise from the global torch RNG) and the batch generator's position.
    """
    metrics, log, state, _ = train_run(CFG, job, DS, 0)
    fingerprint = {"job": job.id}
    first = RunWork(tmp_path / "seed0", fingerprint, root=tmp_path)
    kill_after_saving(first, 1)
    with pytest.raises(Killed):
        train_run(CFG, job, DS, 0, first)
    again = RunWork(tmp_path / "seed0", fingerprint, root=tmp_path)
    metrics2, log2, state2, _ = train_run(CFG, job, DS, 0, again)
    assert again.resumed_from == 1
    assert metrics2 == metrics and log2 == log
    assert state2.keys() == state.keys()
    for k in state:
        assert torch.equal(state2[k], state[k]), k


def test_state_loads_weights_only_and_restores_every_rng(tmp_path):
    work = RunWork(tmp_path / "seed0", {"job": "x"}, root=tmp_path)
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    gen = torch.Generator().manual_seed(4)
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 2)).sum().backward()
    opt.step()
    work.save_state(checkpoint.capture(1, model, opt, None, gen, torch.device("cpu"), log=[{"epoch": 1}]))
    expected = (random.random(), np.random.rand(), torch.rand(1), torch.rand(1, generator=gen))
    state = torch.load(work.state_path, weights_only=True)  # what resume does: no pickled objects
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    checkpoint.restore(state, model, opt, None, gen, torch.device("cpu"))
    assert (random.random(), np.random.rand(), torch.rand(1), torch.rand(1, generator=gen)) == expected
    assert state["log"] == [{"epoch": 1}] and state["optimizer"]["state"][0]["momentum_buffer"].shape == (2, 2)


def test_state_of_other_config_or_code_is_discarded(tmp_path, capsys):
    work = RunWork(tmp_path / "seed0", {"config": "a"}, root=tmp_path)
    work.save_state({"epoch": 1})
    assert RunWork(tmp_path / "seed0", {"config": "a"}, root=tmp_path).load_state()["epoch"] == 1
    assert RunWork(tmp_path / "seed0", {"config": "b"}, root=tmp_path).load_state() is None
    assert "discarding training state" in capsys.readouterr().out


def test_full_disk_during_save_names_the_file_and_keeps_the_previous_state(tmp_path, monkeypatch):
    """Simulated: the write of the state file stops part-way with ENOSPC.
    (tests/test_resume.py fills a real tmpfs where it can mount one.)"""
    work = RunWork(tmp_path / "seed0", {"job": "x"}, root=tmp_path)
    work.save_state({"epoch": 1})

    real_write = Path.write_bytes

    def full_disk(path: Path, data: bytes) -> None:
        real_write(path, data[:10])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    with pytest.raises(OSError, match=f"cannot write {work.state_path}: No space left on device") as err:
        work.save_state({"epoch": 2})
    assert err.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert sorted(p.name for p in work.dir.iterdir()) == ["fingerprint.json", "state.pt"]  # no temporary left
    assert work.load_state()["epoch"] == 1


def test_second_process_on_the_same_job_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    job = training_jobs(CFG)[0]
    first = JobWork(CFG, job)
    with pytest.raises(RuntimeError, match=f"being trained by another process .*{job.id}/.lock"):
        JobWork(CFG, job)
    first.finish()
    assert not checkpoint.job_work_dir(CFG, job).exists()
    JobWork(CFG, job).finish()  # the lock went with the finished job
