"""``mla_released`` against an explicit oracle and against ``mla``.

The oracle follows the released code (github.com/Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-
Adaptation at ab6c184): the training step of ``main.py`` L419-481 (one paired batch, one optimiser
step per modality, the head-gradient hook inert because ``utils/utils.py`` L32 never matches), and
the fusions of L65-106 and L640-651 (batch-level entropy gate; fixed 0.55/0.45 from L968, 0.35/0.25/0.40).
"""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from mla.batches import to_tensors
from mla.fusion import entropy_weights
from mla.methods import create_method
from mla.methods.mla_released import batch_entropy_weights, blockwise_dynamic_fuse, fixed_fuse

LR, MOMENTUM, WD = 0.1, 0.9, 1e-4
TWO, THREE = ("audio", "video"), ("audio", "image", "text")


def linear_encoders(mods, d_in=5, s=4, seed=0):
    torch.manual_seed(seed)
    return nn.ModuleDict({m: nn.Linear(d_in, s) for m in mods})


def released(mods, seed=0, **options):
    torch.manual_seed(seed + 100)
    return create_method("mla_released", linear_encoders(mods, seed=seed), n_classes=3, feature_dim=4, **options)


def paired_batches(mods, n_batches=3, size=6, d_in=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        b = {m: torch.randn(size, d_in, generator=g) for m in mods}
        b["label"] = torch.randint(0, 3, (size,), generator=g)
        out.append(b)
    return out


def sgd(module):
    return torch.optim.SGD(module.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)


# --------------------------------------------------------------------------------------
# 1. Oracle written from the released main.py L419-481, independent of the implementation.
# --------------------------------------------------------------------------------------

def oracle(init: dict[str, torch.Tensor], mods, batches, torch18: bool):
    """The released MLA step with plain tensors, explicit .grad state and hand-written SGD.

    Per batch: features of every modality from the parameters at the start of the batch (one
    forward, its graph kept); then per modality in order: head forward with the CURRENT head,
    CE, gradients into the grad slots, SGD (momentum 0.9, weight decay 1e-4, torch's form:
    d = g + wd*p; buf = d on first use, else momentum*buf + d; p -= lr*buf) applied to every
    parameter whose grad slot is not None; then zero_grad: torch 1.8.1 leaves zero tensors
    in the filled slots, torch >= 2 empties them. At the end of the batch all slots empty.
    """
    state = {k: v.detach().clone() for k, v in init.items()}
    grad: dict[str, torch.Tensor | None] = dict.fromkeys(state)
    buf: dict[str, torch.Tensor | None] = dict.fromkeys(state)
    logged = []
    for batch in batches:
        grad = dict.fromkeys(state)
        enc = {k: state[k].clone().requires_grad_() for k in state if k.startswith("encoders.")}
        feats = {m: F.linear(batch[m], enc[f"encoders.{m}.weight"], enc[f"encoders.{m}.bias"]) for m in mods}
        losses = []
        for m in mods:
            hw = state["head.weight"].clone().requires_grad_()
            hb = state["head.bias"].clone().requires_grad_()
            loss = F.cross_entropy(F.linear(feats[m], hw, hb), batch["label"])
            names = [f"encoders.{m}.weight", f"encoders.{m}.bias", "head.weight", "head.bias"]
            grads = torch.autograd.grad(loss, [enc[names[0]], enc[names[1]], hw, hb])
            for k, g in zip(names, grads):
                grad[k] = g.clone() if grad[k] is None else grad[k] + g
            for k in state:  # SGD step
                if grad[k] is None:
                    continue
                d = grad[k] + WD * state[k]
                buf[k] = d.clone() if buf[k] is None else MOMENTUM * buf[k] + d
                state[k] = state[k] - LR * buf[k]
            if torch18:
                grad = {k: None if g is None else torch.zeros_like(g) for k, g in grad.items()}
            else:
                grad = dict.fromkeys(state)
            losses.append(float(loss.detach()))
        w = (0.55, 0.45) if len(mods) == 2 else (0.35, 0.25, 0.40)
        logged.append(sum(a * b for a, b in zip(w, losses)))
    return state, logged


@pytest.mark.parametrize("mods", [TWO, THREE], ids=["2mod", "3mod"])
@pytest.mark.parametrize("torch18", [False, True], ids=["torch2", "torch18"])
def test_matches_oracle_after_three_batches(mods, torch18):
    method = released(mods, torch18_zero_grad=torch18)
    init = {k: v.detach().clone() for k, v in method.named_parameters()}
    assert set(init) == {f"encoders.{m}.{p}" for m in mods for p in ("weight", "bias")} | {"head.weight", "head.bias"}
    batches = paired_batches(mods)
    opt = sgd(method)
    losses = [method.train_step(b, opt) for b in batches]
    expected, logged = oracle(init, mods, batches, torch18)
    for k, p in method.named_parameters():
        torch.testing.assert_close(p.detach(), expected[k], rtol=1e-5, atol=1e-6, msg=k)
        assert p.grad is None, f"{k}.grad must be None at the end of a batch"
    np.testing.assert_allclose(losses, logged, rtol=1e-6)
    # The oracle's two zero_grad semantics (torch 1.8.1 keeps zero grads) really differ, so the comparison has teeth.
    other, _ = oracle(init, mods, batches, not torch18)
    assert (other[f"encoders.{mods[0]}.weight"] - expected[f"encoders.{mods[0]}.weight"]).abs().max() > 1e-3


@pytest.mark.parametrize("mods,torch18,counts", [
    (TWO, False, (1, 1)), (TWO, True, (2, 1)),
    (THREE, False, (1, 1, 1)), (THREE, True, (3, 2, 1)),
])
def test_updates_per_batch(mods, torch18, counts):
    """Per batch the head moves M times; encoders 1/1(/1), or 2/1 and 3/2/1 with torch 1.8 zero_grad."""
    method = released(mods, torch18_zero_grad=torch18)
    opt = sgd(method)
    moved = {m: 0 for m in (*mods, "head")}
    step = opt.step

    def counting_step(*a, **k):
        before = {n: p.detach().clone() for n, p in method.named_parameters()}
        out = step(*a, **k)
        for n, p in method.named_parameters():
            if not torch.equal(p, before[n]) and n.endswith(".weight"):
                moved[n.split(".")[-2] if n.startswith("encoders.") else "head"] += 1
        return out

    opt.step = counting_step
    method.train_step(paired_batches(mods, n_batches=1)[0], opt)
    assert tuple(moved[m] for m in mods) == counts
    assert moved["head"] == len(mods)


# --------------------------------------------------------------------------------------
# 2. mla (paper form) vs mla_released: each documented difference in isolation.
# --------------------------------------------------------------------------------------

def paper_twin(rel, **options):
    """An ``mla`` with the same encoders and head values as ``rel``."""
    mods = rel.modalities
    paper = create_method("mla", copy.deepcopy(rel.encoders), n_classes=3, feature_dim=4, **options)
    paper.head.load_state_dict(rel.head.state_dict())
    assert paper.modalities == mods
    return paper


def feed_paper(paper, batches, opt):
    """Feed ``mla`` the released per-modality steps: same data, same order (a, v(, t) per batch)."""
    for b in batches:
        for m in paper.modalities:
            assert paper.current_modality() == m
            paper.train_step({m: b[m], "label": b["label"]}, opt)


def params(module, prefix):
    return {k: v.detach().clone() for k, v in module.named_parameters() if k.startswith(prefix)}


@pytest.mark.parametrize("mods", [TWO, THREE], ids=["2mod", "3mod"])
def test_without_hgm_and_leak_only_data_flow_differs(mods):
    """hgm off + the same steps on the same data in the same order: identical encoders and head."""
    rel = released(mods)
    paper = paper_twin(rel, hgm=False)
    batches = paired_batches(mods)
    o_rel, o_paper = sgd(rel), sgd(paper)
    for b in batches:
        rel.train_step(b, o_rel)
    feed_paper(paper, batches, o_paper)
    for k, v in params(rel, "").items():
        torch.testing.assert_close(v, params(paper, "")[k], rtol=1e-6, atol=1e-7, msg=k)


def test_hgm_projection_in_mla_absent_in_released():
    """With hgm on, mla projects the head gradient (P moves); mla_released has no P and does not."""
    rel = released(TWO)
    on = paper_twin(rel, hgm=True, alpha_schedule="constant", alpha=0.5)
    off = paper_twin(rel, hgm=False)
    batches = paired_batches(TWO, n_batches=1)
    o_rel, o_on, o_off = sgd(rel), sgd(on), sgd(off)
    rel.train_step(batches[0], o_rel)
    feed_paper(on, batches, o_on)
    feed_paper(off, batches, o_off)
    assert "P" not in rel.state_dict() and not list(rel.buffers())
    assert not torch.allclose(on.P, torch.eye(4, dtype=torch.float64))
    # Step 0 (audio) is plain in both; the video step's head update is projected only in mla.
    torch.testing.assert_close(params(rel, "encoders.audio"), params(on, "encoders.audio"))
    torch.testing.assert_close(params(rel, "head"), params(off, "head"))
    assert (params(rel, "head")["head.weight"] - params(on, "head")["head.weight"]).abs().max() > 1e-4


def test_torch18_leak_is_the_only_difference_after_one_batch():
    """With torch18_zero_grad, after one batch head and video match mla (hgm off); audio got one
    extra SGD step with a zero gradient: p <- p - lr * (momentum * buf + wd * p)."""
    rel = released(TWO, torch18_zero_grad=True)
    paper = paper_twin(rel, hgm=False)
    batches = paired_batches(TWO, n_batches=1)
    o_rel, o_paper = sgd(rel), sgd(paper)
    rel.train_step(batches[0], o_rel)
    feed_paper(paper, batches, o_paper)
    torch.testing.assert_close(params(rel, "head"), params(paper, "head"))
    torch.testing.assert_close(params(rel, "encoders.video"), params(paper, "encoders.video"))
    for name, p in paper.encoders["audio"].named_parameters():
        buf = o_paper.state[p]["momentum_buffer"]
        leaked = p.detach() - LR * (MOMENTUM * buf + WD * p.detach())
        torch.testing.assert_close(rel.encoders["audio"].get_parameter(name).detach(), leaked)
        assert not torch.allclose(rel.encoders["audio"].get_parameter(name), p)


def test_data_flow_paired_shared_batch_vs_own_minibatch_per_step():
    """Released = N paired batches, M optimiser steps each; paper = M*N single-modality batches, 1 step each."""
    rng = np.random.default_rng(0)
    data = to_tensors({m: rng.normal(size=(10, 5)).astype(np.float32) for m in TWO},
                      rng.integers(0, 3, size=10), TWO)
    rel = released(TWO)
    paper = paper_twin(rel, hgm=False)
    rel_batches = list(rel.epoch_batches(data, 4, torch.Generator().manual_seed(0)))
    paper_batches = list(paper.epoch_batches(data, 4, torch.Generator().manual_seed(0)))
    assert [len(b["label"]) for b in rel_batches] == [4, 4, 2]
    assert all(set(TWO) <= set(b) for b in rel_batches)
    assert len(paper_batches) == 2 * 3
    assert [next(m for m in TWO if m in b) for b in paper_batches] == ["audio", "video"] * 3
    assert all(sum(m in b for m in TWO) == 1 for b in paper_batches)
    # The paper's audio and video steps of one round see different examples; released: the same.
    assert not torch.equal(paper_batches[0]["index"], paper_batches[1]["index"])
    for method, batches in ((rel, rel_batches), (paper, paper_batches)):
        opt = sgd(method)
        calls = []
        step = opt.step
        opt.step = lambda *a, _s=step, **k: (calls.append(1), _s(*a, **k))[1]
        method.train_step(batches[0], opt)
        assert len(calls) == (2 if method is rel else 1)


@pytest.mark.parametrize("mods", [TWO, THREE], ids=["2mod", "3mod"])
def test_fusion_differences_on_the_same_model(mods):
    """Same encoders and head: per-modality logits equal; fusions differ exactly as documented."""
    rel = released(mods, seed=3)
    paper = paper_twin(rel)
    b = paired_batches(mods, n_batches=1, size=5, seed=7)[0]
    with torch.no_grad():
        r, p = rel.predict(b), paper.predict(b)
    L = torch.stack([r[m] for m in mods])
    for m in mods:
        torch.testing.assert_close(r[m], p[m])
    # Paper DF: per-example weights (M, B); released DF: one weight per modality for the batch.
    w_ex = entropy_weights(L)
    w_b = batch_entropy_weights(L)
    col = torch.softmax(L, dim=1)  # [C] calculate_entropy written out: softmax over the batch axis
    H = -(col * torch.log(col)).sum(dim=(1, 2))
    torch.testing.assert_close(w_b, torch.exp(H.max() - H) / torch.exp(H.max() - H).sum())
    assert w_ex.shape == (len(mods), 5) and w_b.shape == (len(mods),)
    torch.testing.assert_close(p["multi:dynamic"], (w_ex[..., None] * L).sum(0))
    torch.testing.assert_close(r["multi:dynamic"], (w_b[:, None, None] * L).sum(0))
    assert not torch.allclose(r["multi:dynamic"], p["multi:dynamic"])
    # "No DF": paper-form uniform mean vs released fixed 0.55/0.45 (0.35/0.25/0.40).
    torch.testing.assert_close(p["multi:uniform"], L.mean(0))
    fixed = 0.55 * L[0] + 0.45 * L[1] if len(mods) == 2 else 0.35 * L[0] + 0.25 * L[1] + 0.40 * L[2]
    torch.testing.assert_close(r["multi:fixed"], fixed)
    assert not torch.allclose(r["multi:fixed"], p["multi:uniform"])
    assert torch.equal(r["multi"], r["multi:dynamic"])  # default fusion


# --------------------------------------------------------------------------------------
# 3. Batch-level entropy weights: hand values and batch dependence.
# --------------------------------------------------------------------------------------

def test_batch_entropy_weights_hand_computed():
    # Softmax over the BATCH axis (dim 0 of each B x C matrix), entropy summed over B x C.
    # Modality 0: all logits 0 -> each class column is (1/2, 1/2): H0 = 2 ln 2.
    # Modality 1: rows (ln 3, ln 3) and (0, 0) -> each column is (3/4, 1/4): H1 = 2 (ln 4 - (3/4) ln 3).
    # H1 < H0, so w1 > w0: w0 = 1 / (1 + e^{H0-H1}) = 4 / (4 + 3^{3/2}).
    L = torch.tensor([[[0.0, 0.0], [0.0, 0.0]],
                      [[math.log(3.0), math.log(3.0)], [0.0, 0.0]]], dtype=torch.float64)
    w = batch_entropy_weights(L)
    w0 = 4 / (4 + 3 ** 1.5)
    torch.testing.assert_close(w, torch.tensor([w0, 1 - w0], dtype=torch.float64))
    # Literal [C] form: exp(max H - H_m) / sum_k exp(max H - H_k).
    H = torch.tensor([2 * math.log(2), 2 * (math.log(4) - 0.75 * math.log(3))], dtype=torch.float64)
    torch.testing.assert_close(w, torch.exp(H.max() - H) / torch.exp(H.max() - H).sum())
    # Per example over classes (the paper, and [C]'s commented-out dim=1) every row of both
    # modalities is uniform over the classes: equal entropies, weights (1/2, 1/2) everywhere.
    torch.testing.assert_close(entropy_weights(L), torch.full((2, 2), 0.5, dtype=torch.float64))
    # Fused: every example of the batch gets the same (w0, w1).
    torch.testing.assert_close(blockwise_dynamic_fuse(L, 64), w0 * L[0] + (1 - w0) * L[1])


def test_fused_prediction_depends_on_block_composition():
    # Example 0 (modality 0 says class 0, modality 1 class 1, more strongly) is fused with example 1
    # (sharp in modality 0) or with example 2 (sharp in modality 1): its predicted class flips.
    L = torch.tensor([[[1.0, 0.0], [6.0, -6.0], [0.0, 0.0]],
                      [[0.0, 2.0], [0.0, 0.0], [-6.0, 6.0]]])
    with_1 = blockwise_dynamic_fuse(L[:, [0, 1]], 64)[0]
    with_2 = blockwise_dynamic_fuse(L[:, [0, 2]], 64)[0]
    assert with_1.argmax() == 0 and with_2.argmax() == 1
    # A final block of one example: entropy 0 for every modality -> uniform weights 1/M.
    torch.testing.assert_close(batch_entropy_weights(L[:, :1]), torch.tensor([0.5, 0.5]))
    # Through predict: eval_block splits whatever batch arrives; per-modality and fixed are unaffected.
    rel2, rel4 = released(TWO, seed=5, eval_block=2), released(TWO, seed=5, eval_block=4)
    b = paired_batches(TWO, n_batches=1, size=5, seed=11)[0]
    with torch.no_grad():
        o2, o4 = rel2.predict(b), rel4.predict(b)
        halves = [rel2.predict({m: b[m][s] for m in TWO}) for s in (slice(0, 2), slice(2, 4), slice(4, 5))]
    for key in ("audio", "video", "multi:fixed"):
        torch.testing.assert_close(o2[key], o4[key])
    assert not torch.allclose(o2["multi:dynamic"], o4["multi:dynamic"])
    torch.testing.assert_close(o2["multi:dynamic"], torch.cat([h["multi:dynamic"] for h in halves]))
    L5 = torch.stack([o2["audio"], o2["video"]])
    torch.testing.assert_close(o2["multi:dynamic"][4], L5[:, 4].mean(0))  # last block of one: uniform


def test_options():
    assert released(TWO).options == {"torch18_zero_grad": False, "fusion": "dynamic", "eval_block": 64}
    fixed = released(TWO, fusion="fixed")
    b = paired_batches(TWO, n_batches=1)[0]
    with torch.no_grad():
        out = fixed.predict(b)
    assert torch.equal(out["multi"], out["multi:fixed"])
    with pytest.raises(ValueError, match="unknown option.*hgm"):
        released(TWO, hgm=True)
    with pytest.raises(ValueError, match="fusion='uniform'"):
        released(TWO, fusion="uniform")
    with pytest.raises(ValueError, match="eval_block=0"):
        released(TWO, eval_block=0)
    with pytest.raises(ValueError, match="paired batches"):
        released(TWO).train_step({"audio": b["audio"], "label": b["label"]}, torch.optim.SGD(fixed.parameters(), lr=0.1))


def test_fixed_fusion_weights_in_the_logits_precision():
    """0.55/0.45 and 0.35/0.25/0.40 applied in float64 when the logits are float64 (not rounded
    to float32 weights)."""
    g = torch.Generator().manual_seed(0)
    two = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    torch.testing.assert_close(fixed_fuse(two), 0.55 * two[0] + 0.45 * two[1], rtol=1e-14, atol=0)
    three = torch.randn(3, 3, 4, generator=g, dtype=torch.float64)
    torch.testing.assert_close(fixed_fuse(three), 0.35 * three[0] + 0.25 * three[1] + 0.40 * three[2], rtol=1e-14, atol=0)


def test_unpaired_batch_names_every_missing_modality():
    rel = released(THREE)
    b = paired_batches(THREE, n_batches=1)[0]
    with pytest.raises(ValueError) as err:
        rel.train_step({"audio": b["audio"], "label": b["label"]}, torch.optim.SGD(rel.parameters(), lr=0.1))
    assert str(err.value) == "mla_released needs paired batches; this batch has no image, text"


def test_fusion_option_error_and_blocks_of_one():
    with pytest.raises(ValueError) as err:
        released(TWO, fusion="uniform")
    assert str(err.value) == "method mla_released: option fusion='uniform'; valid: dynamic, fixed"
    # eval_block = 1 is allowed: every example is its own block, entropy 0 for every modality,
    # so the released gate gives the plain mean of the modalities' logits.
    one = released(TWO, eval_block=1)
    b = paired_batches(TWO, n_batches=1)[0]
    with torch.no_grad():
        out = one.predict(b)
    torch.testing.assert_close(out["multi"], (out["audio"] + out["video"]) / 2)
