"""``save_state_every_s``: how often a run saves its resume state, and that it changes no result."""
from __future__ import annotations

from pathlib import Path

import pytest

from mla import grid
from mla.train import train_run

from tiny import one_thread, tiny_config, tiny_dataset  # noqa: F401  (one_thread: autouse fixture)

ROOT = Path(__file__).resolve().parents[1]


class RecordingWork:
    """Stands in for ``checkpoint.RunWork`` to record which epochs' states ``train_run`` saves."""

    def __init__(self) -> None:
        self.saved: list[int] = []

    def load_state(self, device):
        return None

    def save_state(self, state: dict) -> None:
        self.saved.append(state["epoch"])


@pytest.mark.parametrize("every, saved", [(0, [1, 2, 3]), (1.0e6, [])])
def test_states_saved_by_interval_and_results_unchanged(every, saved):
    cfg = tiny_config(ROOT, epochs=3, save_state_every_s=every)
    job = next(j for j in grid.jobs(cfg) if j.phase == "train" and j.method == "concat")
    ds = tiny_dataset()
    work = RecordingWork()
    metrics, log, _, _ = train_run(cfg, job, ds, 0, work)
    assert work.saved == saved
    plain, plain_log, _, _ = train_run(cfg, job, ds, 0)  # no work directory: nothing saved
    assert (metrics, log) == (plain, plain_log)


def test_interval_leaves_out_the_last_epoch():
    """A positive interval never saves after the last epoch (the finished run is written at once)."""
    cfg = tiny_config(ROOT, epochs=2, save_state_every_s=1.0e-9)
    job = next(j for j in grid.jobs(cfg) if j.phase == "train" and j.method == "concat")
    work = RecordingWork()
    train_run(cfg, job, tiny_dataset(), 0, work)
    assert work.saved == [1]
