"""The missing-modality protocol (Table 2): one mask per (seed, rate) for every job of the missing
phase, per-modality runs on their column, Late Fusion over each example's present modalities, absent
inputs never read as data, and checkpoint selection per fusion rule."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mla import catalog, grid
from mla.batches import eval_batches, to_tensors
from mla.methods import METHODS, create_method
from mla.methods.unimodal import Unimodal
from mla.frozen import identity_encoders
from mla.missing import draw_mask, realised
from mla.train import (Selection, assemble_run, build_method, job_split_tensors, mark_complete, train_run,
                       write_run)
from tiny import one_thread, tiny_config, tiny_dataset  # noqa: F401 (autouse fixture)

ROOT = Path(__file__).resolve().parents[1]
RATE, SEED = 0.5, 3


def missing_config(tmp_path: Path, masking: str = "released", epochs: int = 1) -> dict:
    """The tiny config whose missing phase runs every registered method on the tiny image-text data."""
    cfg = tiny_config(ROOT, epochs=epochs)
    cfg["seeds"] = [SEED]
    cfg["missing"] = {"datasets": ["builtin_it"], "rates": [RATE], "masking": masking,
                      "methods": [m for m in catalog.METHODS if 2 in catalog.method_info(m).modality_counts]}
    return cfg


def missing_jobs(cfg: dict) -> list[grid.Job]:
    return [j for j in grid.jobs(cfg) if j.phase == "missing"]


def full_masks(ds, masking: str) -> dict[str, np.ndarray]:
    """The (n, M) presence mask of each split drawn directly for the dataset's full modality set."""
    return {s: draw_mask(masking, len(a), len(ds.modalities), RATE, SEED, s) for s, a in ds.splits.items()}


def test_registry_and_catalog_agree():
    """The tests below iterate the catalog; every registered method is in it."""
    import mla.methods  # noqa: F401

    assert set(METHODS.names()) == set(catalog.METHODS)


@pytest.mark.parametrize("masking", ["released", "independent"])
def test_every_missing_phase_job_sees_the_one_mask_of_its_seed_and_rate(tmp_path, masking):
    cfg, ds = missing_config(tmp_path, masking), tiny_dataset()
    jobs = missing_jobs(cfg)
    assert {j.method for j in jobs} == {m for m in catalog.METHODS if 2 in catalog.method_info(m).modality_counts}
    assert {j.modality for j in jobs if j.method == "unimodal"} == set(ds.modalities)
    ref = full_masks(ds, masking)
    for job in jobs:
        data, masks = job_split_tensors(cfg, job, ds, SEED)
        assert set(masks) == set(ref), job.id
        for s in ref:
            np.testing.assert_array_equal(masks[s], ref[s], err_msg=f"{job.id} {s}: saved mask")
            cols = [ds.modalities.index(m) for m in data[s].modalities]
            np.testing.assert_array_equal(data[s].present.numpy(), ref[s][:, cols], err_msg=f"{job.id} {s}: present")
        if job.modality:  # a branch's realised missing fraction is its column's, not 0
            j = ds.modalities.index(job.modality)
            frac = 1 - data["train"].present.numpy().mean()
            assert frac == 1 - ref["train"][:, j].mean() and 0.3 < frac < 0.7, (job.id, frac)


def _record_unimodal(monkeypatch) -> dict[str, list]:
    """Wrap Unimodal's epoch_batches and predict to record the rows it trains on and scores."""
    seen: dict[str, list] = {"train": [], "scored_present": [], "scored": []}
    epoch_batches, predict = Unimodal.epoch_batches, Unimodal.predict

    def recording_batches(self, data, batch_size, gen):
        for b in epoch_batches(self, data, batch_size, gen):
            seen["train"].append(b["index"].clone())
            yield b

    def recording_predict(self, batch):
        if not self.training:
            seen["scored_present"].append(batch["present"][:, 0].clone())
            seen["scored"].append(len(batch["label"]))
        return predict(self, batch)

    monkeypatch.setattr(Unimodal, "epoch_batches", recording_batches)
    monkeypatch.setattr(Unimodal, "predict", recording_predict)
    return seen


def _hand_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return round(100.0 * float((logits.argmax(-1) == labels).sum()) / len(labels), 4)


def test_unimodal_branches_train_on_their_column_and_late_fusion_fuses_them(tmp_path, monkeypatch):
    """Each unimodal run trains only on the training rows that have its modality, is scored on the
    val/test rows that have it, records its column's realised fraction; Late Fusion assembled from
    those runs scores the mean of the present branches' logits (recomputed here by hand)."""
    monkeypatch.chdir(tmp_path)  # the grid's results/<name>/... paths are relative
    cfg, ds = missing_config(tmp_path, "independent"), tiny_dataset()
    ref = full_masks(ds, "independent")
    by_tag = {j.tag: j for j in missing_jobs(cfg)}
    seen = _record_unimodal(monkeypatch)
    states = {}
    for m in ds.modalities:
        job, j = by_tag[f"unimodal-{m}-eta50"], ds.modalities.index(m)
        for k in seen:
            seen[k].clear()
        metrics, log, state, masks = train_run(cfg, job, ds, SEED)
        trained = torch.cat(seen["train"]).tolist()
        assert sorted(trained) == np.flatnonzero(ref["train"][:, j]).tolist()  # once each, only D_m
        assert all(bool(p.all()) for p in seen["scored_present"])
        n_val, n_test = int(ref["val"][:, j].sum()), int(ref["test"][:, j].sum())
        assert sum(seen["scored"]) == n_val + n_test and metrics["scored"] == {"val": n_val, "test": n_test}
        assert metrics["counts"] == {s: len(a) for s, a in ds.splits.items()}
        per = metrics["missing"]["realised_per_modality"]
        for s in ref:
            np.testing.assert_array_equal(masks[s], ref[s])
            assert per[s][m] == round(1 - ref[s][:, j].mean(), 4)
            assert metrics["missing"]["realised"][s] == round(1 - ref[s].mean(), 4)
        write_run(Path(job.runs[0].run_dir), cfg, metrics, log, state, masks, 0.0)
        mark_complete(job)  # late fusion assembles only finished jobs
        states[m] = state

    lf_job = by_tag["late_fusion-eta50"]
    metrics, _, lf_state, masks = assemble_run(cfg, lf_job, ds, SEED)
    for s in ref:
        np.testing.assert_array_equal(masks[s], ref[s])
    # by hand: each branch is the unimodal model of its run, fed its present test rows' inputs
    test, _ = job_split_tensors(cfg, lf_job, ds, SEED)
    batch = test["test"].batch(torch.arange(len(test["test"])))
    branch_logits = []
    for m in ds.modalities:
        uni = build_method(cfg, by_tag[f"unimodal-{m}-eta50"], ds, (m,))
        uni.load_state_dict(states[m])
        uni.eval()
        with torch.no_grad():
            branch_logits.append(uni.head(uni.encoders[m](batch[m])))
    present = torch.from_numpy(ref["test"])
    fused = []
    for r in range(len(present)):
        have = [k for k in range(len(ds.modalities)) if present[r, k]] or list(range(len(ds.modalities)))
        fused.append(sum(branch_logits[k][r] for k in have) / len(have))
    assert (~present.any(1)).any(), "the tiny test split should hold an example with no modality"
    assert metrics["test"]["multi"] == _hand_accuracy(torch.stack(fused), batch["label"])
    assert metrics["scored"]["test"] == len(present)  # fused methods score every test example


def tiny_encoders(mods=("image", "text"), d_in=3, s=4) -> nn.ModuleDict:
    torch.manual_seed(0)
    return nn.ModuleDict({m: nn.Linear(d_in, s) for m in mods})


def test_late_fusion_logits_are_the_mean_over_exactly_the_present_modalities():
    """Rows: both present, image only, text only, none (independent masking): the fused logits are
    (l_i + l_t) / 2, l_i, l_t and, for the empty row, the mean of both zero-input branches."""
    model = create_method("late_fusion", tiny_encoders(), n_classes=3, feature_dim=4)
    for branch in model.branches.values():  # non-zero biases, so a zero input still gives distinct logits
        nn.init.normal_(branch.head.bias)
    x = {"image": np.arange(12, dtype=np.float32).reshape(4, 3) / 7, "text": -np.arange(12, dtype=np.float32).reshape(4, 3) / 5}
    present = np.array([[1, 1], [1, 0], [0, 1], [0, 0]], dtype=bool)
    data = to_tensors(x, np.zeros(4, dtype=np.int64), ("image", "text"), present)
    batch = data.batch(torch.arange(4))
    with torch.no_grad():
        out = model.predict(batch)
        li = model.branches["image"].head(model.encoders["image"](torch.from_numpy(x["image"])))
        lt = model.branches["text"].head(model.encoders["text"](torch.from_numpy(x["text"])))
        zi = model.branches["image"].head(model.encoders["image"](torch.zeros(3)))
        zt = model.branches["text"].head(model.encoders["text"](torch.zeros(3)))
    expected = torch.stack([(li[0] + lt[0]) / 2, li[1], lt[2], (zi + zt) / 2])
    torch.testing.assert_close(out["multi"], expected, rtol=0, atol=1e-6)


def test_absent_entries_are_zeroed_even_when_stored_as_nan():
    audio = np.arange(24, dtype=np.float32).reshape(4, 2, 3)
    present = np.array([[1], [0], [1], [0]], dtype=bool)
    audio[~present[:, 0]] = np.nan
    batch = to_tensors({"audio": audio}, np.zeros(4), ("audio",), present).batch(torch.arange(4))
    assert not batch["audio"].isnan().any()
    assert torch.equal(batch["audio"][1], torch.zeros(2, 3)) and torch.equal(batch["audio"][2], torch.from_numpy(audio[2]))
    with pytest.raises(ValueError, match=r"expected \(examples, modalities\) = \(4, 1\)"):
        to_tensors({"audio": audio}, np.zeros(4), ("audio",), np.ones((4, 2), dtype=bool))


def _garbage(ds, masks: dict[str, np.ndarray], seed: int):
    """``ds`` with every ABSENT entry's stored values replaced by other random values."""
    rng = np.random.default_rng(seed)
    out = copy.deepcopy(ds)
    for s, arr in out.splits.items():
        for j, m in enumerate(ds.modalities):
            a = arr.arrays[m]
            absent = ~masks[s][:, j]
            a[absent] = rng.integers(1 if m == "text" else 0, 20 if m == "text" else 256, a[absent].shape)
    return out


# Methods on frozen features train on the unimodal runs' features, not on these inputs: the same
# property (NaN in absent entries reaches no loss or logit) is tested in tests/test_missing_baselines.py.
@pytest.mark.parametrize("method", [m for m in catalog.METHODS if 2 in catalog.method_info(m).modality_counts
                                    and not catalog.method_info(m).frozen_features])
def test_no_method_reads_an_absent_input(tmp_path, method):
    """Every method (and each unimodal branch) trains and predicts the same whatever an absent entry
    holds: absent inputs are zeroed before the forward. Each trains on every example that has a
    modality it uses (a unimodal run: exactly those with its modality)."""
    cfg, ds = missing_config(tmp_path, "independent"), tiny_dataset()
    ref = full_masks(ds, "independent")
    jobs = [j for j in missing_jobs(cfg) if j.method == method]
    assert jobs
    for job in jobs:
        runs = []
        for variant in (ds, _garbage(ds, ref, 1), _garbage(ds, ref, 2)):
            data, _ = job_split_tensors(cfg, job, variant, SEED)
            torch.manual_seed(0)
            model = build_method(cfg, job, variant, data["train"].modalities)
            opt = torch.optim.SGD(model.parameters(), lr=0.05)
            gen = torch.Generator().manual_seed(0)
            losses, trained = [], []
            model.train()
            for b in model.epoch_batches(data["train"], 16, gen):
                for k, m in enumerate(data["train"].modalities):
                    if m in b:
                        absent = ~b["present"][:, k]
                        assert not b[m][absent].any(), f"{job.id}: absent {m} input not zero"
                trained.append(b["index"])
                losses.append(model.train_step(b, opt))
            model.eval()
            with torch.no_grad():
                logits = [model.predict(b) for b in eval_batches(data["test"], 64)]
            runs.append((losses, torch.cat(trained), model.state_dict(), logits))
        base = runs[0]
        for other in runs[1:]:
            assert other[0] == base[0], f"{job.id}: losses depend on absent entries"
            assert torch.equal(other[1], base[1])
            for k in base[2]:
                assert torch.equal(other[2][k], base[2][k]), f"{job.id}: {k} depends on absent entries"
            for a, b in zip(base[3], other[3]):
                for k in a:
                    assert torch.equal(a[k], b[k]), f"{job.id}: prediction {k} depends on absent entries"
        trained_rows = set(base[1].tolist())
        cols = [ds.modalities.index(m) for m in data["train"].modalities]
        has_one = set(np.flatnonzero(ref["train"][:, cols].any(1)).tolist())
        if job.modality:
            assert trained_rows == has_one  # D_m exactly
        else:
            assert has_one <= trained_rows


def _scores(val: dict, test: dict) -> dict:
    return {"val": val, "test": test}


def test_selection_per_fusion_rule_on_hand_made_curves():
    """multi (= dynamic) peaks on validation at epoch 2, uniform at epoch 3: each rule keeps its own
    epoch and scores; the state kept is the multi epoch's; ties keep the earliest epoch."""
    module = nn.Linear(1, 1)
    sel = Selection("val")
    curves = [  # epoch: val multi/dynamic/uniform, test multi/dynamic/uniform
        _scores({"multi": 50, "multi:dynamic": 50, "multi:uniform": 40}, {"multi": 48, "multi:dynamic": 48, "multi:uniform": 41}),
        _scores({"multi": 70, "multi:dynamic": 70, "multi:uniform": 55}, {"multi": 66, "multi:dynamic": 66, "multi:uniform": 52}),
        _scores({"multi": 65, "multi:dynamic": 65, "multi:uniform": 62}, {"multi": 69, "multi:dynamic": 69, "multi:uniform": 60}),
        _scores({"multi": 70, "multi:dynamic": 70, "multi:uniform": 62}, {"multi": 71, "multi:dynamic": 71, "multi:uniform": 63}),
    ]
    for epoch, scores in enumerate(curves, 1):
        with torch.no_grad():
            module.weight.fill_(epoch)
        sel.update(epoch, scores, module)
    assert sel.best_epoch == 2 and float(sel.best_state["weight"]) == 2.0
    assert sel.fusion_best == {"dynamic": {"epoch": 2, "val": 70, "test": 66},
                               "uniform": {"epoch": 3, "val": 62, "test": 60}}
    assert sel.best_test == {"epoch": 4, "multi": 71}
    resumed = Selection(**copy.deepcopy(vars(sel)))  # what a checkpoint restores
    assert vars(resumed).keys() == vars(sel).keys() and resumed.fusion_best == sel.fusion_best


def test_metrics_json_records_each_fusion_rules_own_selection(tmp_path):
    """mla over 4 epochs: fusion_selection[rule] is the first epoch of maximal validation accuracy of
    that rule in the per-epoch log, with that epoch's val and test scores; written to metrics.json."""
    cfg, ds = missing_config(tmp_path, epochs=4), tiny_dataset()
    job = next(j for j in grid.jobs(cfg) if j.phase == "train" and j.method == "mla")
    metrics, log, state, masks = train_run(cfg, job, ds, SEED)
    assert metrics["multi_fusion"] == "dynamic"
    assert set(metrics["fusion_selection"]) == {"dynamic", "uniform"}
    for rule, chosen in metrics["fusion_selection"].items():
        vals = [r["val_fusion"][rule] for r in log]
        epoch = 1 + vals.index(max(vals))
        assert chosen == {"epoch": epoch, "val": vals[epoch - 1], "test": log[epoch - 1]["test_fusion"][rule]}
    assert metrics["fusion_selection"]["dynamic"]["epoch"] == metrics["selected_epoch"]
    write_run(tmp_path / "run", cfg, metrics, log, state, masks, 0.0, root=tmp_path)
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["fusion_selection"] == metrics["fusion_selection"]


def test_realised_fractions_refuse_a_mask_of_the_wrong_shape_and_empty_splits_are_none():
    mods = ("audio", "text")
    masks = {"train": np.array([[True, False], [True, True]]), "val": np.zeros((0, 2), bool)}
    out = realised(masks, mods)
    assert out["overall"] == {"train": 0.25, "val": None}
    assert out["per_modality"] == {"train": {"audio": 0.0, "text": 0.5}, "val": {"audio": None, "text": None}}
    for bad in (np.ones(4, bool), np.ones((2, 3), bool)):
        with pytest.raises(ValueError, match=rf"^test mask of shape \({bad.shape[0]},(| {bad.shape[1] if bad.ndim > 1 else ''})"
                                             rf"\): expected \(n, 2\) for \('audio', 'text'\)$"):
            realised({"test": bad}, mods)


def test_a_unimodal_run_needs_one_training_example_with_its_modality():
    method = create_method("unimodal", identity_encoders(("text",)), n_classes=2, feature_dim=3)
    arrays = {"text": np.ones((4, 3), np.float32)}
    one = to_tensors(arrays, np.array([0, 1, 0, 1]), ("text",), np.array([[False], [True], [False], [False]]))
    batches = list(method.epoch_batches(one, 2, torch.Generator().manual_seed(0)))
    assert [b["index"].tolist() for b in batches] == [[1]]
    none = to_tensors(arrays, np.array([0, 1, 0, 1]), ("text",), np.zeros((4, 1), bool))
    with pytest.raises(ValueError, match=r"^unimodal text: no training example has this modality under the "
                                         r"missing-modality mask; lower missing.rates or use more data$"):
        method.epoch_batches(none, 2, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("method", [m for m, i in catalog.METHODS.items()  # every method that trains
                                    if 2 in i.modality_counts and (i.frozen_features or not i.reuses)])
def test_a_table2_run_scores_test_once_exactly_as_at_its_selected_epoch(tmp_path, monkeypatch, method):
    """Table 2 reads the selected checkpoint's test accuracy only, so a missing-phase run scores val after
    every epoch and test once, from the selected state: the same numbers as scoring test after every
    epoch (the state carries everything prediction reads; prediction changes nothing)."""
    import mla.train as train_mod

    monkeypatch.chdir(tmp_path)  # frozen-feature jobs read the unimodal runs under results/<name>/
    cfg, ds = missing_config(tmp_path, epochs=3), tiny_dataset()
    by_tag = {j.tag: j for j in missing_jobs(cfg)}
    if catalog.method_info(method).frozen_features:
        for m in ds.modalities:
            uni = by_tag[f"unimodal-{m}-eta50"]
            metrics, log, state, masks = train_run(cfg, uni, ds, SEED)
            write_run(uni.runs[0].run_dir, cfg, metrics, log, state, masks, 0.0)
    job = next(j for j in missing_jobs(cfg) if j.method == method)
    metrics, log, _, _ = train_run(cfg, job, ds, SEED)
    assert all("test" not in row and "val" in row for row in log)
    assert metrics["best_on_test"] is None and metrics["last_epoch"] is None
    monkeypatch.setattr(train_mod, "scores_test_every_epoch", lambda job, select_on: True)
    ref, ref_log, _, _ = train_run(cfg, job, ds, SEED)
    assert [r["val"] for r in ref_log] == [r["val"] for r in log]
    assert ref["selected_epoch"] == metrics["selected_epoch"]
    assert metrics["test"] == ref["test"] == ref_log[metrics["selected_epoch"] - 1]["test"]
    assert metrics["fusion"] == ref["fusion"]


def test_table1_and_test_selected_runs_score_test_every_epoch(tmp_path):
    from mla.train import scores_test_every_epoch
    cfg = missing_config(tmp_path)
    table2 = missing_jobs(cfg)[0]
    assert table2.missing_rate == RATE and not scores_test_every_epoch(table2, "val")
    assert scores_test_every_epoch(table2, "test")  # val_fraction 0: the selection itself needs test
    table1 = next(j for j in grid.jobs(cfg) if j.phase == "train")
    assert table1.missing_rate is None and scores_test_every_epoch(table1, "val")
