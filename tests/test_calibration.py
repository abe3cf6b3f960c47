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


def _run(dataset: str, tag: str, seed: int, test: dict, curve: list | None) -> dict:
    return {"dataset": dataset, "tag": tag, "seed": seed, "test": test, "val_curve": curve,
            "selected_epoch": None if curve is None else len(curve), "wall_s": 1.0}


def _records() -> list[dict]:
    """builtin_it (image + text), 2 seeds, 8 epochs (last quarter: epochs 7-8)."""
    rise = [10.0] * 6
    return [
        _run("builtin_it", "unimodal-image", 0, {"multi": 90.0}, rise + [90, 90]),
        _run("builtin_it", "unimodal-image", 1, {"multi": 92.0}, rise + [92, 92]),
        # seed means 71, 75 over the last two epochs: range 4 > 1.5
        _run("builtin_it", "unimodal-text", 0, {"multi": 80.0}, rise + [70, 74]),
        _run("builtin_it", "unimodal-text", 1, {"multi": 82.0}, rise + [72, 76]),
        # image under concat 89 vs 91 alone: gap 2, not lazy; text 61 vs 81: gap 20 > 2 pooled sd 2.83, lazy
        _run("builtin_it", "concat", 0, {"multi": 93.0, "image": 88.0, "text": 60.0}, rise + [93, 93.5]),
        _run("builtin_it", "concat", 1, {"multi": 95.0, "image": 90.0, "text": 62.0}, rise + [95, 95.5]),
        _run("builtin_it", "late_fusion", 0, {"multi": 94.0}, None),
        _run("builtin_it", "late_fusion", 1, {"multi": 96.0}, None),
        _run("builtin_it", "bigated", 0, {"multi": 80.0}, rise + [80, 80]),
        _run("builtin_it", "bigated", 1, {"multi": 90.0}, rise + [90, 90]),
    ]


def test_summarise_judges_each_cell_the_laziness_and_the_stability():
    c = _criteria()
    s = c.summarise(_records())
    cells = {x["cell"]: x for x in s["cells"]}
    assert cells["unimodal-image"]["range"] == pytest.approx(0.0) and cells["unimodal-image"]["converged"] is True
    assert cells["unimodal-text"]["range"] == pytest.approx(4.0) and cells["unimodal-text"]["converged"] is False
    assert cells["concat"]["range"] == pytest.approx(0.5) and cells["concat"]["converged"] is True
    # late fusion trains nothing: judged by its branches' largest range (text's 4)
    assert cells["late_fusion"]["range"] == pytest.approx(4.0) and cells["late_fusion"]["converged"] is False
    assert cells["bigated"]["std"] == pytest.approx(math.sqrt(50)) and cells["bigated"]["stable"] is False
    assert cells["concat"]["mean"] == pytest.approx(94.0) and cells["concat"]["std"] == pytest.approx(math.sqrt(2))
    rows = {r["modality"]: r for r in s["lazy"]["builtin_it"]["modalities"]}
    assert rows["image"]["gap"] == pytest.approx(2.0) and rows["image"]["lazy"] is False
    assert rows["text"]["gap"] == pytest.approx(20.0) and rows["text"]["two_pooled_sd"] == pytest.approx(2 * math.sqrt(2))
    assert rows["text"]["lazy"] is True and s["lazy"]["builtin_it"]["pass"] is True
    st = s["stability"]
    # stds: four cells sqrt(2), bigated sqrt(50): median sqrt(2); t(0.975, 2) = 4.303 -> 4.303 * sqrt(2) * sqrt(2/2)
    assert st["median_std"] == pytest.approx(math.sqrt(2)) and st["max_std"] == pytest.approx(math.sqrt(50))
    assert st["max_std_cell"] == "builtin_it bigated" and st["cells"] == 5 and st["seeds"] == 2
    assert st["smallest_significant"] == pytest.approx(4.3027 * math.sqrt(2), abs=1e-3) and st["pass"] is False
    assert s["pass"] is False


def test_summarise_passes_only_when_every_criterion_holds():
    c = _criteria()
    records = [r for r in _records() if r["tag"] not in ("bigated", "late_fusion")]
    for r in records:  # make text converge: 75, 75 at the end of both seeds
        if r["tag"] == "unimodal-text":
            r["val_curve"] = r["val_curve"][:6] + [75.0, 75.0]
    s = c.summarise(records)
    assert s["stability"]["pass"] is False  # 4.303 * sqrt(2) = 6.1 points > 3 with two seeds
    assert s["pass"] is False
    no_concat = c.summarise([r for r in records if r["tag"] != "concat"])
    assert no_concat["lazy"]["builtin_it"] == {"modalities": [], "pass": False, "missing": "concat"}


def test_readme_calibration_block_states_each_criterion_with_its_figures():
    c = _criteria()
    from mla.report import readme
    calib = {"commit": "abc1234", "seeds": [0, 1], "epochs": 8, "last_quarter": 2,
             "thresholds": {"lazy_gap": 5.0, "lazy_sigmas": 2.0, "converged_range": 1.5, "stable_median": 2.0,
                            "stable_max": 5.0, "significant_max": 3.0},
             **c.summarise(_records())}
    calib["lazy"]["other"] = {"modalities": [{"modality": "audio", "gap": 1.0, "lazy": False}], "pass": False}
    text = readme.calibration_md(calib)
    assert "at commit `abc1234`, 2 seeds" in text
    assert "- **lazy** (FAIL)" in text and "`builtin_it` text 81.0 alone, 61.0 under concat; `other` no lazy modality" in text
    assert "- **converged** (FAIL, 3 of 5 cells)" in text and "over the last 2 of 8 epochs" in text
    assert "(the most: 4.00, unimodal-text on `builtin_it`)" in text
    assert "- **stable** (FAIL)" in text and "median seed std is 1.41 points" in text
    assert "largest 7.07 (builtin_it bigated; at most 5), so 2 seeds call a difference of 6.08 points" in text
