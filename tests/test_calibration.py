"""The learning-rate schedules of ``mla.train.build_optimizer`` and the calibration criteria of
``bench/calibration_criteria.py``, against hand-computed values."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from mla import config
from mla.config import ConfigError
from mla.train import build_optimizer

ROOT = Path(__file__).resolve().parents[1]


def _criteria():
    spec = importlib.util.spec_from_file_location("calibration_criteria", ROOT / "bench" / "calibration_criteria.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _lrs(scheduler: dict, epochs: int, lr: float = 0.1) -> list[float]:
    """The learning rate each epoch 1..epochs trains at, stepping the schedule after each epoch."""
    cfg = {"training": {"epochs": epochs, "optimizer": {"name": "sgd", "lr": lr, "momentum": 0.9},
                        "scheduler": scheduler}}
    opt, sched = build_optimizer(cfg, [torch.nn.Parameter(torch.zeros(1))])
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        if sched is not None:
            sched.step()
    return out


def test_cosine_anneals_within_the_run():
    # lr * (1 + cos(pi (e-1)/4)) / 2 for e = 1..4: cos 0, pi/4, pi/2, 3pi/4 = 1, 0.70711, 0, -0.70711
    assert _lrs({"name": "cosine"}, 4) == pytest.approx([0.1, 0.0853553, 0.05, 0.0146447], abs=1e-7)


def test_step_and_none_schedules():
    assert _lrs({"name": "step", "step_size": 2, "gamma": 0.5}, 5) == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
    assert _lrs({"name": "none"}, 3) == [0.1, 0.1, 0.1]


def test_schedule_settings_that_would_be_ignored_or_missing_are_errors():
    with pytest.raises(ValueError, match="cosine takes no step_size"):
        _lrs({"name": "cosine", "step_size": 70}, 2)
    with pytest.raises(ValueError, match="step needs gamma"):
        _lrs({"name": "step", "step_size": 70}, 2)


def test_schema_admits_cosine_only_among_new_names():
    cfg = config.load(ROOT / "config" / "config.yaml", ["training.scheduler={name: cosine}"])
    assert cfg["training"]["scheduler"] == {"name": "cosine"}
    with pytest.raises(ConfigError, match="scheduler"):
        config.load(ROOT / "config" / "config.yaml", ["training.scheduler={name: linear}"])


def test_convergence_range_is_over_the_last_quarter_of_the_seed_mean():
    c = _criteria()
    assert [c.last_quarter(e) for e in (1, 4, 8, 10, 12)] == [1, 1, 2, 3, 3]
    # seed means: 50, 60, 70, 71, 72.5, 72 -> last ceil(6/4) = 2 epochs: 72.5, 72 -> range 0.5
    curves = [[40, 60, 70, 70, 73, 72], [60, 60, 70, 72, 72, 72]]
    assert c.convergence_range(curves) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unequal"):
        c.convergence_range([[1, 2], [1, 2, 3]])


def test_laziness_needs_five_points_beyond_two_pooled_sd():
    c = _criteria()
    # alone 70, 72, 74 (sd 2); joint 60, 62, 64 (sd 2): gap 10, pooled sd 2 -> lazy
    assert c.laziness([70, 72, 74], [60, 62, 64]) == pytest.approx((10.0, 2.0, True))
    # alone 74 +- 2, joint 64 +- 6: gap 10 > 2 pooled sd = 2 sqrt((4 + 36) / 2) = 8.94 -> lazy
    gap, pooled, lazy = c.laziness([72, 74, 76], [58, 64, 70])
    assert (gap, pooled, lazy) == pytest.approx((10.0, math.sqrt(20), True))
    # gap 4 < 5 -> not lazy however small the spread
    assert c.laziness([70, 70.1, 69.9], [66, 66.1, 65.9])[2] is False
    # gap 6 >= 5 but 2 pooled sd = 2 sqrt((25 + 0) / 2) = 7.07 -> not lazy
    assert c.laziness([70, 75, 80], [69, 69, 69])[2] is False
    with pytest.raises(ValueError, match="at least 2 seeds"):
        c.seed_std([1.0])
