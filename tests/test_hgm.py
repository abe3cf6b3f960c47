"""MLA's head gradient modification (HGM, [P] Eqs. 3-5): the RLS update, h̄, α, retention, diagnostics."""
from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mla import grid
from mla.batches import to_tensors
from mla.methods import create_method
from mla.methods.mla import retention, rls_update
from mla.train import train_run, write_run
from tiny import one_thread, tiny_config, tiny_dataset  # noqa: F401 (autouse fixture)

ROOT = Path(__file__).resolve().parents[1]
F64 = torch.float64


def _bench():
    spec = importlib.util.spec_from_file_location("hgm_retention", ROOT / "bench" / "hgm_retention.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Recorder(nn.Module):
    """A real encoder (flatten + linear) that also keeps a detached copy of every output."""

    def __init__(self, d_in: int, s: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(d_in, s))
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x.float())
        self.seen.append(out.detach())
        return out


def _data(mods=("audio", "text"), n=40, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {"audio": rng.normal(size=(n, 1, 2, 3)).astype(np.float32),
              "text": rng.integers(0, 9, size=(n, 6)), "image": rng.integers(0, 255, size=(n, 3, 2, 2), dtype=np.uint8)}
    return to_tensors({m: arrays[m] for m in mods}, rng.integers(0, 3, size=n), tuple(mods))


def _recorders(mods=("audio", "text"), s=4):
    torch.manual_seed(0)
    d_in = {"audio": 6, "text": 6, "image": 12}
    return nn.ModuleDict({m: Recorder(d_in[m], s) for m in mods})


def _mla(s=4, mods=("audio", "text"), **options):
    return create_method("mla", _recorders(mods, s), n_classes=3, feature_dim=s, **options)


def test_rls_equals_woodbury_inverse_for_constant_alpha():
    """From P_0 = I, T updates with constant α give P_T = (I + Σ_t h_t h_tᵀ / α)^-1 (Woodbury)."""
    g = torch.Generator().manual_seed(3)
    s, alpha = 5, 0.2
    hs = torch.randn(9, s, generator=g, dtype=F64) + 1.0
    P = torch.eye(s, dtype=F64)
    for h in hs:
        P = rls_update(P, h, alpha)
    expected = torch.linalg.inv(torch.eye(s, dtype=F64) + hs.T @ hs / alpha)
    torch.testing.assert_close(P, expected, rtol=1e-9, atol=1e-12)


def test_method_P_is_the_inverse_information_matrix_of_its_hbars_and_alphas():
    """Through the method (batch h̄, [C]'s α schedule): P = (I + Σ_t h̄_t h̄_tᵀ / α_t)^-1, with
    h̄_t the batch mean of step t and α_t = 0.1^(1 + i/N) written out by hand."""
    m = _mla(hbar="batch")
    data = _data()
    opt = torch.optim.SGD(m.parameters(), lr=0.05)
    info = torch.eye(4, dtype=F64)
    n_rounds = math.ceil(40 / 8)
    for k, batch in enumerate(m.epoch_batches(data, 8, torch.Generator().manual_seed(0))):
        mod = m.current_modality()
        m.train_step(batch, opt)
        if k > 0:  # t = 0 leaves P alone
            h = m.encoders[mod].seen[-1].mean(0).double()   # the mean as the batch option takes it
            info += torch.outer(h, h) / 0.1 ** (1 + (k // 2) / n_rounds)
    torch.testing.assert_close(m.P, torch.linalg.inv(info), rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("mods", [("audio", "text"), ("audio", "image", "text")])
def test_released_alpha_counts_rounds_not_steps(mods):
    """[C] passes the paired loader's batch index to every modality's hook of that batch, so α
    depends on the round i = (step in epoch) // M: 0.1, 0.1^1.5 and 0.1^(1 + (N-1)/N) at
    i = 0, N/2, N-1 for every modality of the round, and it restarts each epoch."""
    m = _mla(mods=mods)
    M, n = len(mods), 10   # 40 examples / batch 4 = 10 rounds
    expected = {0: 0.1, 5: 0.1 ** 1.5, 9: 0.1 ** (1 + 9 / 10)}
    for epoch in range(2):
        seen = {}
        for k, _ in enumerate(m.epoch_batches(_data(mods), 4, torch.Generator().manual_seed(0))):
            seen[(k // M, k % M)] = m.alpha()
            m.step += 1
        assert len(seen) == n * M
        for i, a in expected.items():
            for j in range(M):
                assert seen[(i, j)] == pytest.approx(a, rel=1e-12), (epoch, i, j)
    m.options["alpha_schedule"] = "constant"
    assert m.alpha() == 0.1 and _mla(alpha_schedule="constant", alpha=0.3).alpha() == 0.3


@pytest.mark.parametrize("hbar", ["running", "epoch"])
def test_running_hbar_is_the_mean_of_every_feature_seen(hbar):
    """``running``: mean over every example of the modality seen in training (both epochs);
    ``epoch``: over the current epoch only. Checked against the recorded encoder outputs."""
    m = _mla(hbar=hbar)
    data = _data()
    opt = torch.optim.SGD(m.parameters(), lr=0.05)
    starts = {}
    for epoch in range(2):
        starts[epoch] = {mod: len(m.encoders[mod].seen) for mod in m.modalities}
        for batch in m.epoch_batches(data, 8, torch.Generator().manual_seed(epoch)):
            m.train_step(batch, opt)
    for mi, mod in enumerate(m.modalities):
        first = 0 if hbar == "running" else starts[1][mod]
        feats = torch.cat(m.encoders[mod].seen[first:]).double()
        assert m.feat_count[mi] == len(feats) == (80 if hbar == "running" else 40)
        torch.testing.assert_close(m.hbar(mi, feats[:1]), feats.mean(0), rtol=1e-10, atol=1e-12)
    # The batch option ignores the history: h̄ is the batch's own mean.
    b = _mla(hbar="batch")
    x = torch.arange(8.0).view(2, 4)
    torch.testing.assert_close(b.hbar(0, x), torch.tensor([2.0, 3.0, 4.0, 5.0], dtype=F64))


def test_first_step_plain_then_one_hgm_step_hand_computed():
    """t = 0: plain SGD step, P = I, no retention. t = 1: the weight moves by -lr·G·P_1, the bias
    by -lr·∇b (never projected), and the diagnostics equal the hand-computed retention
    ||G P_1|| / ||G|| and P_1's spectrum {α/(α + |h|²), 1, ..., 1}."""
    lr, alpha, s = 0.1, 0.5, 4
    m = _mla(s=s, alpha_schedule="constant", alpha=alpha)
    data = _data()
    batches = iter(m.epoch_batches(data, 8, torch.Generator().manual_seed(0)))
    b0, b1 = next(batches), next(batches)

    ref = copy.deepcopy(m)
    feats0 = ref.encoders["audio"](b0["audio"])
    nn.functional.cross_entropy(ref.head(feats0), b0["label"]).backward()
    w0, bias0 = m.head.weight.detach().clone(), m.head.bias.detach().clone()
    m.train_step(b0, torch.optim.SGD(m.parameters(), lr=lr))
    torch.testing.assert_close(m.head.weight - w0, -lr * ref.head.weight.grad)
    torch.testing.assert_close(m.P, torch.eye(s, dtype=F64))
    diag0 = m.epoch_diagnostics()
    assert "hgm_retention_mean" not in diag0 and diag0["hgm_P_trace"] == s

    ref = copy.deepcopy(m)
    feats1 = ref.encoders["text"](b1["text"])
    nn.functional.cross_entropy(ref.head(feats1), b1["label"]).backward()
    G, gb = ref.head.weight.grad.double(), ref.head.bias.grad.clone()
    h = feats1.detach().double().mean(0)  # running mean of the text data seen = this batch
    P1 = torch.eye(s, dtype=F64) - torch.outer(h, h) / (alpha + h @ h)
    w1, bias1 = m.head.weight.detach().double().clone(), m.head.bias.detach().clone()
    m.train_step(b1, torch.optim.SGD(m.parameters(), lr=lr))
    torch.testing.assert_close(m.P, P1)
    torch.testing.assert_close(m.head.weight.double() - w1, -lr * G @ P1, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(m.head.bias - bias1, -lr * gb)   # bias: the plain gradient step
    assert not torch.allclose(G @ P1, G)

    d = m.epoch_diagnostics()
    kept = float(torch.linalg.matrix_norm(G @ P1) / torch.linalg.matrix_norm(G))
    assert d["hgm_retention_last"] == d["hgm_retention_mean"] == pytest.approx(kept, rel=1e-5)
    small = alpha / (alpha + float(h @ h))
    assert d["hgm_P_eig_min"] == pytest.approx(small, rel=1e-5)
    assert d["hgm_P_eig_max"] == pytest.approx(1.0, rel=1e-5)
    assert d["hgm_P_trace"] == pytest.approx(s - 1 + small, rel=1e-5)
    assert _mla(hgm=False).epoch_diagnostics() == {}


def test_batch_hbar_collapses_retention_and_running_does_not():
    """Fixed-feature simulation (bench/hgm_retention.py, s = 32, 2 modalities, batch 16, 40
    rounds per epoch, 3 epochs, seed 0). Measured epoch-3 mean retention: batch 0.0022,
    epoch 0.16, running 0.35 (seeds 1-2: 0.0022-0.0024, 0.15-0.18, 0.34-0.39)."""
    sim = _bench().simulate
    last = {h: sim(h, dim=32, rounds=40, epochs=3)[-1]["hgm_retention_mean"] for h in ("batch", "epoch", "running")}
    assert last["batch"] < 0.01
    assert 0.1 < last["epoch"] < 0.25
    assert last["running"] > 0.25


def test_diagnostics_reach_log_jsonl(tmp_path):
    """train_run + write_run: each epoch's record of an HGM run carries the diagnostics, and the
    selected epoch's spectrum is that of the selected state's P; HGM off adds no key."""
    cfg = tiny_config(ROOT, epochs=2)
    ds = tiny_dataset()
    job = grid.job_by_id(cfg, "train/builtin_it/mla")
    metrics, log, state, masks = train_run(cfg, job, ds, 0)
    write_run(tmp_path / "on", cfg, metrics, log, state, masks, 1.0, root=tmp_path)
    records = [json.loads(x) for x in (tmp_path / "on" / "log.jsonl").read_text().splitlines()]
    keys = {"hgm_retention_mean", "hgm_retention_last", "hgm_P_eig_min", "hgm_P_eig_max", "hgm_P_trace"}
    assert len(records) == 2 and all(keys <= set(r) for r in records)
    for r in records:
        assert 0 < r["hgm_retention_last"] <= 1 and 0 < r["hgm_retention_mean"] <= 1
        assert 0 < r["hgm_P_eig_min"] <= r["hgm_P_eig_max"] <= 1 + 1e-9
    sel = records[metrics["selected_epoch"] - 1]
    eig = torch.linalg.eigvalsh(state["P"])
    assert sel["hgm_P_eig_min"] == pytest.approx(float(eig[0]), rel=1e-5)
    assert sel["hgm_P_trace"] == pytest.approx(float(state["P"].trace()), rel=1e-5)

    off = dataclasses.replace(job, options=(("hgm", False),))
    _, log_off, _, _ = train_run(cfg, off, ds, 0)
    assert not any(k.startswith("hgm_") for r in log_off for k in r)


def test_table3_shows_whether_hgm_acts():
    """The report's Table 3 carries, per MLA variant, the diagnostics at the selected and the last
    epoch, mean ± std over seeds (hand-computed), and 'HGM off' for the hgm false variant."""
    from mla.report import tables
    from mla.report.collect import JobResult

    def rec(epoch, kept, lo):
        return {"epoch": epoch, "hgm_retention_mean": kept, "hgm_retention_last": kept / 2,
                "hgm_P_eig_min": lo, "hgm_P_eig_max": 1.0, "hgm_P_trace": 3.5}

    on = grid.Job("train", "builtin_av", "mla", "mla", (0, 1), "r/on")
    off = grid.Job("ablation", "builtin_av", "mla", "mla-nohgm", (0, 1), "r/off", options=(("hgm", False),))
    metrics_on = tuple({"selected_epoch": 2, "options": {"hgm": True}, "selection": "val", "test": {}} for _ in range(2))
    logs_on = ((rec(1, 0.9, 0.5), rec(2, 0.4, 1e-3), rec(3, 0.1, 1e-5)),
               (rec(1, 0.9, 0.5), rec(2, 0.2, 3e-3), rec(3, 0.3, 3e-5)))
    metrics_off = tuple({"selected_epoch": 1, "options": {"hgm": False}, "selection": "val", "test": {}} for _ in range(2))
    logs_off = (({"epoch": 1},), ({"epoch": 1},))
    results = {on.id: JobResult(on, metrics_on, logs_on), off.id: JobResult(off, metrics_off, logs_off)}

    t = tables.table3({"ablation": {"datasets": ["builtin_av"]}}, results, tables.load_paper())
    block = next(b for b in t.blocks if b.key == "builtin_av/hgm")
    sel, last = "train/mla: selected epoch", "train/mla: last epoch"
    assert block.frame.loc[sel, "retention (epoch mean)"] == f"0.3 ± {math.sqrt(0.02):.2g}"
    assert block.values[sel]["retention (epoch mean)"] == {"mean": 0.3, "std": float(f"{math.sqrt(0.02):.6g}"), "n": 2}
    assert block.values[last]["retention (last step)"]["mean"] == pytest.approx(0.1)
    assert block.frame.loc[sel, "P λ_min"] == "0.002 ± 0.0014"
    assert block.values[last]["P λ_min"]["mean"] == pytest.approx(2e-5)
    assert block.frame.loc["ablation/mla-nohgm: last epoch", "P trace"] == tables.HGM_OFF
    assert "builtin_av/hgm" in tables.table_csv(t) and "is HGM acting?" in tables.table_md(t)
    # A run logged before the diagnostics existed is named, not shown as a number.
    old = JobResult(on, metrics_on, (({"epoch": 2},), ({"epoch": 2},)))
    assert tables.hgm_block({on.id: old}, "builtin_av").frame.loc[sel, "P trace"] == tables.NOT_LOGGED


def test_diagnostics_report_the_extreme_eigenvalues_and_trace_to_six_digits():
    """P with four distinct eigenvalues: min, max and trace as P has them, rounded to 6 significant
    digits (not fixed decimals)."""
    m = _mla(s=4)
    with torch.no_grad():
        m.P.copy_(torch.diag(torch.tensor([0.5, 1.23456789e-7, 0.9, 0.25], dtype=F64)))
    d = m.epoch_diagnostics()
    assert d == {"hgm_P_eig_min": 1.23457e-7, "hgm_P_eig_max": 0.9, "hgm_P_trace": 1.65}


def test_retention_of_zero_and_unit_gradients():
    g = torch.tensor([[0.6, 0.0], [0.0, 0.8]], dtype=F64)  # Frobenius norm 1
    assert retention(g, g * 0.5) == pytest.approx(0.5)
    assert retention(torch.zeros(2, 2, dtype=F64), torch.zeros(2, 2, dtype=F64)) is None


def test_batch_hbar_keeps_no_running_sums_and_a_wrong_batch_is_named():
    m = _mla(hbar="batch")
    data = _data()
    opt = torch.optim.SGD(m.parameters(), lr=0.05)
    for batch in m.epoch_batches(data, 8, torch.Generator().manual_seed(0)):
        m.train_step(batch, opt)
    assert int(m.step) > 2 and not m.feat_count.any() and not m.feat_sum.any()
    fresh = _mla()
    with pytest.raises(ValueError) as err:
        fresh.train_step({"text": torch.zeros(2, 4), "label": torch.zeros(2, dtype=torch.long)}, opt)
    assert str(err.value) == "mla step 0 trains audio, but the batch has no audio"


def test_state_buffers_keep_their_dtypes_and_alpha_before_any_epoch():
    """Checkpointed state: an integer step counter and float64 P and feature sums/counts. Before any
    epoch is set up (direct train_step calls) the released schedule counts rounds from 0 with
    N = 1: α = 0.1^(1 + i) in round i."""
    m = _mla(mods=("audio", "text"))
    assert m.step.dtype == torch.long and m.P.dtype == F64
    assert m.feat_sum.dtype == F64 and m.feat_count.dtype == F64
    assert m.alpha() == pytest.approx(0.1, rel=1e-12)
    m.step += 1
    assert m.alpha() == pytest.approx(0.1, rel=1e-12)  # round 0, its second modality
    m.step += 1
    assert m.alpha() == pytest.approx(0.01, rel=1e-12)  # round 1
