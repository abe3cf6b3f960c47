"""Every registered frozen-feature method (Table 2's missing-modality baselines, discovered from the
catalog's ``frozen_features``) trains on 2- and 3-modality feature data with missing samples:
finite losses, changed parameters, predictions of the right shape, and no absent entry read
(absent rows hold NaN here: one reaching a loss or a logit makes it NaN)."""
from __future__ import annotations


import numpy as np
import pytest
import torch

from mla import catalog
from mla.batches import SplitTensors, to_tensors
from mla.frozen import identity_encoders
from mla.methods.base import METHODS, create_method
from tiny import one_thread  # noqa: F401  (fixture)

FROZEN = sorted(m for m, info in catalog.METHODS.items() if info.frozen_features)
S, N_CLASSES = 12, 3
# Network sizes shrunk for speed, for the methods that have these options (others keep their defaults).
SMALL = {"hidden": 16, "n_components": 3}


class NaNAbsent(SplitTensors):
    """A split whose batches carry NaN, not zero, where a modality is absent."""

    def batch(self, index, modalities=None):
        out = super().batch(index, modalities)
        for i, m in enumerate(self.modalities):
            absent = ~out["present"][:, i]
            out[m] = out[m].clone()
            out[m][absent] = float("nan")
        return out


def feature_split(mods: tuple[str, ...], n: int = 160, seed: int = 0) -> NaNAbsent:
    """Class-dependent (n, S) features per modality; each row misses a modality with probability
    0.3 (at least one kept), so every pair has complete rows and every modality absent ones."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % N_CLASSES
    centres = rng.normal(size=(len(mods), N_CLASSES, S)) * 2
    arrays = {m: (centres[i][labels] + rng.normal(size=(n, S))).astype(np.float32) for i, m in enumerate(mods)}
    present = rng.random((n, len(mods))) > 0.3
    present[~present.any(1), 0] = True
    split = to_tensors(arrays, labels, mods, present)
    return NaNAbsent(**{f: getattr(split, f) for f in split.__dataclass_fields__})


def test_frozen_methods_are_discovered_and_registered():
    assert {"cca", "dcca", "dccae"} <= set(FROZEN)
    for m in FROZEN:
        assert m in METHODS and catalog.method_info(m).reuses == "unimodal"
        assert not catalog.method_info(m).assembles  # they train (work directory, resume)


def test_nan_split_really_carries_nan():
    data = feature_split(("audio", "text"))
    b = data.batch(torch.arange(len(data)))
    assert torch.isnan(b["audio"][~b["present"][:, 0]]).all() and not torch.isnan(b["audio"][b["present"][:, 0]]).any()


@pytest.mark.parametrize("name", FROZEN)
@pytest.mark.parametrize("mods", [("audio", "text"), ("audio", "image", "text")])
def test_frozen_method_trains_on_features_with_missing_modalities(name, mods):
    if len(mods) not in catalog.method_info(name).modality_counts:
        pytest.skip(f"{name} supports {catalog.method_info(name).modality_counts} modalities")
    torch.manual_seed(0)
    small = {k: v for k, v in SMALL.items() if k in METHODS.get(name).defaults}
    method = create_method(name, identity_encoders(mods), n_classes=N_CLASSES, feature_dim=S, **small)
    data = feature_split(mods)
    before = {k: p.detach().clone() for k, p in method.named_parameters()}
    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad] or [torch.zeros(1, requires_grad=True)],
                          lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(2):  # two epochs, consumed as the training loop does
        method.train()
        losses += [method.train_step(b, opt) for b in method.epoch_batches(data, 48, gen)]
    assert losses and all(np.isfinite(losses)), losses
    changed = [k for k, p in method.named_parameters() if not torch.equal(p, before[k])]
    assert changed, "no parameter changed"
    grad_params = [k for k, p in method.named_parameters() if p.requires_grad]
    if grad_params:  # methods that train by gradient: some of those changed
        assert set(changed) & set(grad_params)
    method.eval()
    with torch.no_grad():
        batch = data.batch(torch.arange(len(data)))
        out = method.predict(batch)
    assert set(out) >= {"multi", *mods}
    for key, logits in out.items():
        assert logits.shape == (len(data), N_CLASSES), key
        assert torch.isfinite(logits).all(), f"{key}: non-finite logits (an absent NaN entry was read)"
    # Absent entries are never read: other values there change nothing.
    other = {**batch, **{m: torch.where(batch["present"][:, i:i + 1], batch[m], torch.full_like(batch[m], 1e6))
                         for i, m in enumerate(mods)}}
    with torch.no_grad():
        again = method.predict(other)
    for key in out:
        torch.testing.assert_close(again[key], out[key])
    # Table 2's runs score the fused prediction only (score_modalities False): the same multi logits.
    method.score_modalities = False
    with torch.no_grad():
        fused = method.predict(batch)
    assert not set(fused) & set(mods), f"{name}: per-modality keys {sorted(set(fused) & set(mods))} still scored"
    torch.testing.assert_close(fused["multi"], out["multi"])


def test_frozen_job_trains_on_the_unimodal_runs_features(tmp_path, monkeypatch):
    """A frozen-feature job of the missing phase: its features are, row by row, the selected
    unimodal checkpoints' encoder outputs on the rows that have the modality and zero elsewhere; it
    trains through train_run (epochs, selection) and records the unimodal runs it used."""
    from pathlib import Path

    from mla import grid
    from mla.checkpoint import RunWork
    from mla.frozen import frozen_data
    from mla.train import build_method, job_split_tensors, train_run, write_run
    from tiny import tiny_config, tiny_dataset

    monkeypatch.chdir(tmp_path)  # the grid's results/<name>/... paths are relative
    cfg = tiny_config(Path(__file__).resolve().parents[1], epochs=2)
    cfg["seeds"] = [1]
    cfg["missing"] = {"datasets": ["builtin_it"], "rates": [0.5], "masking": "independent",
                      "methods": ["cca", "dcca"]}
    cfg["method_options"]["dcca"] = {"hidden": 8, "n_components": 3}
    cfg["method_options"]["cca"] = {"n_components": 3}
    ds = tiny_dataset(n_train=96, n_eval=32)
    by_tag = {j.tag: j for j in grid.jobs(cfg) if j.phase == "missing"}
    cca_job = by_tag["cca-eta50"]
    assert set(cca_job.needs) == {by_tag["unimodal-image-eta50"].id, by_tag["unimodal-text-eta50"].id}
    with pytest.raises(FileNotFoundError, match="unimodal run"):
        frozen_data(cfg, cca_job, ds, 1, job_split_tensors(cfg, cca_job, ds, 1)[0])
    states = {}
    for m in ds.modalities:
        job = by_tag[f"unimodal-{m}-eta50"]
        metrics, log, state, masks = train_run(cfg, job, ds, 1)
        write_run(job.runs[0].run_dir, cfg, metrics, log, state, masks, 0.0)
        states[m] = state

    data, masks = job_split_tensors(cfg, cca_job, ds, 1)
    feats, components = frozen_data(cfg, cca_job, ds, 1, data)
    assert components == [f"{by_tag[f'unimodal-{m}-eta50'].job_dir}/seed1" for m in ds.modalities]
    for split in ("train", "test"):
        inputs = data[split].batch(torch.arange(len(data[split])))
        got = feats[split].batch(torch.arange(len(data[split])))
        assert torch.equal(got["present"], inputs["present"]) and torch.equal(got["label"], inputs["label"])
        for i, m in enumerate(ds.modalities):
            uni = build_method(cfg, by_tag[f"unimodal-{m}-eta50"], ds, (m,))
            uni.load_state_dict(states[m])
            uni.eval()
            with torch.no_grad():
                expected = uni.encoders[m](inputs[m])
            present = inputs["present"][:, i]
            assert present.any() and (~present).any()
            torch.testing.assert_close(got[m][present], expected[present])
            assert not got[m][~present].any()

    for job in (cca_job, by_tag["dcca-eta50"]):
        metrics, log, state, masks = train_run(cfg, job, ds, 1)
        assert metrics["components"] == components and len(log) == 2
        assert metrics["selected_epoch"] in (1, 2) and 0 <= metrics["test"]["multi"] <= 100
        assert set(metrics["test"]) == {"multi"}  # Table 2 reads the fused accuracy only (score_modalities)
        # killed after epoch 1 and resumed (features recomputed): the uninterrupted result
        first = RunWork(tmp_path / job.tag, {"job": job.id}, root=tmp_path)
        save = first.save_state

        def save_then_die(st, save=save):
            save(st)
            raise Killed

        first.save_state = save_then_die
        with pytest.raises(Killed):
            train_run(cfg, job, ds, 1, first)
        again = RunWork(tmp_path / job.tag, {"job": job.id}, root=tmp_path)
        metrics2, log2, state2, _ = train_run(cfg, job, ds, 1, again)
        assert again.resumed_from == 1 and metrics2 == metrics and log2 == log
        assert all(torch.equal(state2[k], state[k]) for k in state)


class Killed(BaseException):
    """Stands in for SIGKILL right after a save."""


@pytest.mark.parametrize("name", FROZEN)
def test_method_file_catalog_literal_agrees_with_the_catalog(name):
    """Each frozen-feature method file carries a torch-free literal ``CATALOG`` (read with ``ast``,
    as the catalog will discover it) that agrees with mla/catalog.py and the class's options."""
    import ast
    from pathlib import Path

    import mla.methods

    source = (Path(mla.methods.__file__).parent / f"{name}.py").read_text()
    literal = next(ast.literal_eval(node.value) for node in ast.parse(source).body if isinstance(node, ast.Assign)
                   and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["CATALOG"])
    info = catalog.method_info(name)
    assert tuple(literal["modality_counts"]) == info.modality_counts
    assert literal["reuses"] == info.reuses and literal["frozen_features"] is info.frozen_features is True
    assert catalog.option_defaults(literal) == METHODS.get(name).defaults == catalog.option_defaults(
        {"options": info.options})


@pytest.mark.parametrize("name", ["ae", "cra", "mmin", "if_mmin"])
def test_imputation_methods_embed_present_inputs_and_zeros_for_absent(name):
    """``embed`` (the modality-gap analysis reads it): the encoders' output of each present input; an
    absent input (NaN here) is replaced by zeros before the encoder."""
    mods = ("audio", "image", "text")
    method = create_method(name, identity_encoders(mods), n_classes=N_CLASSES, feature_dim=S)
    data = feature_split(mods)
    batch = data.batch(torch.arange(len(data)))
    out = method.embed(batch)
    assert list(out) == list(mods)
    for i, m in enumerate(mods):
        keep = batch["present"][:, i]
        torch.testing.assert_close(out[m][keep], batch[m][keep])
        assert (out[m][~keep] == 0).all() and (~keep).any()
