"""The Table 1 baselines (sum, film, bigated, ogm_ge, qmf) against hand-computed values."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from mla.batches import to_tensors
from mla.methods import create_method
from mla.methods.common import deactivate
from mla.methods.concat import subhead_logits
from mla.methods.ogm_ge import modulate_gradients, ogm_coefficients, true_class_scores
from mla.methods.qmf import energy_confidence, normalise_history, rank_loss, ranking_targets

LN3 = math.log(3.0)


class Identity(nn.Module):
    """An 'encoder' that passes its input through: features are set by hand."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def identity_method(name, mods, s=2, n_classes=2, **options):
    return create_method(name, nn.ModuleDict({m: Identity() for m in mods}), n_classes=n_classes,
                         feature_dim=s, **options)


def linear_method(name, mods=("audio", "video"), d_in=5, s=4, n_classes=3, seed=0, **options):
    torch.manual_seed(seed)
    enc = nn.ModuleDict({m: nn.Linear(d_in, s) for m in mods})
    return create_method(name, enc, n_classes=n_classes, feature_dim=s, **options)


def batch_of(mods, n=6, d_in=5, n_classes=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    out = {m: torch.randn(n, d_in, generator=g) for m in mods}
    out["label"] = torch.randint(0, n_classes, (n,), generator=g)
    out["index"] = torch.arange(n)
    out["present"] = torch.ones(n, len(mods), dtype=torch.bool)
    return out


def set_linear(layer: nn.Linear, weight, bias) -> None:
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight, dtype=torch.float32))
        layer.bias.copy_(torch.tensor(bias, dtype=torch.float32))


# --- sum ------------------------------------------------------------------------------------
@pytest.mark.parametrize("mods", [("audio", "video"), ("audio", "image", "text")])
def test_sum_output_and_per_modality_bias_over_m(mods):
    m = identity_method("sum", mods)
    feats = {"audio": [1.0, 2.0], "video": [3.0, -1.0], "image": [3.0, -1.0], "text": [0.5, 0.5]}
    for k, name in enumerate(mods):  # W_m = (k+1) I, b_m = [k+1, -(k+1)]
        set_linear(m.heads[name], [[k + 1.0, 0.0], [0.0, k + 1.0]], [k + 1.0, -(k + 1.0)])
    batch = {name: torch.tensor([feats[name]]) for name in mods}
    out = m.predict(batch)
    M = len(mods)
    if M == 2:  # [1,2] + [1,-1]  +  2*[3,-1] + [2,-2]
        expected_multi = [1 + 1 + 6 + 2, 2 - 1 - 2 - 2]
    else:  # ... + 3*[0.5,0.5] + [3,-3]
        expected_multi = [1 + 1 + 6 + 2 + 1.5 + 3, 2 - 1 - 2 - 2 + 1.5 - 3]
    torch.testing.assert_close(out["multi"], torch.tensor([expected_multi], dtype=torch.float32))
    # OGM-GE's unimodal rule: the modality's own layer with its bias / M (M = 2: bias / 2).
    torch.testing.assert_close(out["audio"], torch.tensor([[1 + 1 / M, 2 - 1 / M]]))
    second = mods[1]
    f = feats[second]
    torch.testing.assert_close(out[second], torch.tensor([[2 * f[0] + 2 / M, 2 * f[1] - 2 / M]]))


# --- film -----------------------------------------------------------------------------------
def _film(mods, **options):
    m = identity_method("film", mods, **options)
    # gamma = h + [0.5, 0.5], beta = [1, -1]; head = identity.
    set_linear(m.film[0], [[1, 0], [0, 1], [0, 0], [0, 0]], [0.5, 0.5, 1.0, -1.0])
    set_linear(m.head, [[1, 0], [0, 1]], [0, 0])
    return m


def test_film_two_modalities_hand_values():
    m = _film(("audio", "video"))
    out = m.predict({"audio": torch.tensor([[1.0, 2.0]]), "video": torch.tensor([[3.0, 4.0]])})
    # gamma(a) = [1.5, 2.5], beta = [1, -1]: z = [1.5*3 + 1, 2.5*4 - 1]
    torch.testing.assert_close(out["multi"], torch.tensor([[5.5, 9.0]]))
    # audio alone: video features zeroed -> z = beta(a) = [1, -1]
    torch.testing.assert_close(out["audio"], torch.tensor([[1.0, -1.0]]))
    # video alone: audio features zeroed -> gamma(0) = [0.5, 0.5], beta(0) = [1, -1]
    torch.testing.assert_close(out["video"], torch.tensor([[0.5 * 3 + 1, 0.5 * 4 - 1]]))
    # reverse: video conditions audio, gamma(v) = [3.5, 4.5]
    r = _film(("audio", "video"), reverse=True)
    out = r.predict({"audio": torch.tensor([[1.0, 2.0]]), "video": torch.tensor([[3.0, 4.0]])})
    torch.testing.assert_close(out["multi"], torch.tensor([[3.5 * 1 + 1, 4.5 * 2 - 1]]))


def test_film_three_modalities_chain():
    m = _film(("audio", "image", "text"))
    set_linear(m.film[1], [[1, 0], [0, 1], [0, 0], [0, 0]], [0, 0, 0, 0])  # gamma_2 = z_1, beta_2 = 0
    batch = {"audio": torch.tensor([[1.0, 2.0]]), "image": torch.tensor([[3.0, 4.0]]),
             "text": torch.tensor([[1.0, -1.0]])}
    out = m.predict(batch)
    torch.testing.assert_close(out["multi"], torch.tensor([[5.5 * 1, 9.0 * -1]]))  # z_2 = z_1 * t
    # text alone: z_1 = gamma(0) * 0 + beta(0) = [1, -1], z_2 = z_1 * t
    torch.testing.assert_close(out["text"], torch.tensor([[1.0 * 1, -1.0 * -1]]))
    torch.testing.assert_close(out["image"], torch.tensor([[0.0, 0.0]]))
    torch.testing.assert_close(out["audio"], torch.tensor([[0.0, 0.0]]))  # text zeroed at the end


def test_film_rejects_unknown_option():
    with pytest.raises(ValueError, match="unknown option.*x_film"):
        identity_method("film", ("audio", "video"), x_film=True)


# --- bigated --------------------------------------------------------------------------------
def test_bigated_two_modalities_hand_values():
    m = identity_method("bigated", ("audio", "video"))
    for name in ("audio", "video"):
        set_linear(m.proj[name], [[1, 0], [0, 1]], [0, 0])
    # blocks: [sig(o_a) * o_v (2) ; sig(o_v) * o_a (2)]; class 0 sums all, class 1 takes block 1.
    set_linear(m.head, [[1, 1, 1, 1], [1, 1, 0, 0]], [0, 0])
    a, v = torch.tensor([[0.0, LN3]]), torch.tensor([[LN3, 0.0]])
    blocks = m.gated_blocks({"audio": a, "video": v})
    # sig(0) = 1/2, sig(ln 3) = 3/4
    torch.testing.assert_close(blocks, torch.tensor([[0.5 * LN3, 0.0, 0.0, 0.5 * LN3]]))
    out = m.predict({"audio": a, "video": v})
    torch.testing.assert_close(out["multi"], torch.tensor([[LN3, 0.5 * LN3]]))
    # audio alone: o_v = 0 -> a-gates-v block 0, v-gates-a block = sig(0) * a = [0, ln3 / 2]
    torch.testing.assert_close(out["audio"], torch.tensor([[0.5 * LN3, 0.0]]))
    torch.testing.assert_close(out["video"], torch.tensor([[0.5 * LN3, 0.5 * LN3]]))


def test_bigated_three_modalities_all_ordered_pairs():
    m = identity_method("bigated", ("audio", "image", "text"), s=1)
    assert m.pairs == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]
    assert m.head.in_features == 6
    for name in m.modalities:
        set_linear(m.proj[name], [[1.0]], [0.0])
    feats = {"audio": torch.tensor([[0.0]]), "image": torch.tensor([[LN3]]), "text": torch.tensor([[2.0]])}
    s = torch.sigmoid
    o = [torch.tensor(0.0), torch.tensor(LN3), torch.tensor(2.0)]
    expected = torch.stack([s(o[i]) * o[j] for i, j in m.pairs]).view(1, 6)
    torch.testing.assert_close(m.gated_blocks(feats), expected)
    torch.testing.assert_close(m.gated_blocks(feats)[0, 0], torch.tensor(0.5 * LN3))  # audio gates image


# --- per-modality predictors deactivate the other modalities --------------------------------
@pytest.mark.parametrize("name", ["film", "bigated", "ogm_ge", "qmf"])
@pytest.mark.parametrize("mods", [("audio", "video"), ("audio", "image", "text")])
def test_per_modality_predictors_zero_other_features(name, mods):
    m = linear_method(name, mods)
    m.eval()
    batch = batch_of(mods)
    calls = []
    fuse = m.fuse

    def spy(feats):
        calls.append({k: v.detach().clone() for k, v in feats.items()})
        return fuse(feats)

    m.fuse = spy
    out = m.predict(batch)
    full = m.embed(batch)
    assert len(calls) == 1 + len(mods)
    for k, v in calls[0].items():
        torch.testing.assert_close(v, full[k])
    for keep, feats in zip(mods, calls[1:]):
        for k, v in feats.items():
            torch.testing.assert_close(v, full[k] if k == keep else torch.zeros_like(full[k]))
        torch.testing.assert_close(out[keep], fuse(deactivate(full, keep)))


def test_ogm_ge_per_modality_is_full_bias_not_subhead():
    m = linear_method("ogm_ge")
    batch = batch_of(("audio", "video"))
    feats = m.embed(batch)
    out = m.predict(batch)
    torch.testing.assert_close(out["video"], feats["video"] @ m.head.weight[:, 4:].T + m.head.bias)
    torch.testing.assert_close(out["audio"], subhead_logits(m.head, feats["audio"], 0, 2) + m.head.bias / 2)


# --- OGM-GE ---------------------------------------------------------------------------------
def test_ogm_scores_and_coefficients_two_modalities():
    labels = torch.tensor([0, 1])
    audio = torch.tensor([[LN3, 0.0], [0.0, 0.0]])  # p(y) = 3/4, 1/2
    video = torch.zeros(2, 2)  # p(y) = 1/2, 1/2
    s = true_class_scores([audio, video], labels)
    torch.testing.assert_close(s, torch.tensor([1.25, 1.0]))
    k = ogm_coefficients(s, alpha=0.3)  # rho_a = 1.25 > 1: audio modulated, 1 - tanh(0.3 * 1.25)
    torch.testing.assert_close(k, torch.tensor([1 - math.tanh(0.375), 1.0], dtype=torch.float64))
    k = ogm_coefficients(torch.tensor([1.0, 1.25]), alpha=0.8)  # video dominant
    torch.testing.assert_close(k, torch.tensor([1.0, 1 - math.tanh(1.0)], dtype=torch.float64))
    k = ogm_coefficients(torch.tensor([1.0, 1.0]), alpha=0.3)  # tie: Eq. 10 needs rho > 1
    torch.testing.assert_close(k, torch.ones(2, dtype=torch.float64))


def test_ogm_coefficients_three_modalities():
    labels = torch.tensor([0, 0])
    a = torch.tensor([[math.log(9.0), 0.0]] * 2)  # p(y) = 0.9 -> s = 1.8
    v = torch.tensor([[0.0, LN3]] * 2)  # 0.25 -> 0.5
    t = torch.tensor([[0.0, math.log(4.0)]] * 2)  # 0.2 -> 0.4
    s = true_class_scores([a, v, t], labels)
    torch.testing.assert_close(s, torch.tensor([1.8, 0.5, 0.4]))
    # rho = 1.8 / (0.5 + 0.4) = 2 ([C]'s ratio over the sum of the others)
    torch.testing.assert_close(ogm_coefficients(s, 0.3), torch.tensor([1 - math.tanh(0.6), 1, 1], dtype=torch.float64))
    # image dominant but below half of the total: 1.0 / (0.5 + 0.9) < 1 -> nothing modulated
    s2 = torch.tensor([0.5, 1.0, 0.9])
    torch.testing.assert_close(ogm_coefficients(s2, 0.3), torch.ones(3, dtype=torch.float64))
    # with the mean of the others: rho = 1.0 / 0.7
    torch.testing.assert_close(ogm_coefficients(s2, 0.3, "mean"),
                               torch.tensor([1, 1 - math.tanh(0.3 / 0.7), 1], dtype=torch.float64))


def _reference_grads(m, batch):
    ref = copy.deepcopy(m)
    feats = ref.embed(batch)
    nn.functional.cross_entropy(ref.fuse(feats), batch["label"]).backward()
    n = len(ref.modalities)
    logits = [subhead_logits(ref.head, feats[k], i, n) for i, k in enumerate(ref.modalities)]
    probs = [torch.softmax(lg.detach(), 1)[torch.arange(len(batch["label"])), batch["label"]].sum() for lg in logits]
    return {k: [p.grad.clone() for p in ref.encoders[k].parameters()] for k in ref.modalities}, probs


@pytest.mark.parametrize("mods", [("audio", "video"), ("audio", "image", "text")])
def test_ogm_scales_only_the_dominant_encoder_inside_the_window(mods):
    m = linear_method("ogm_ge", mods, gaussian_enhancement=False, alpha=0.5, ratio_others="mean")
    batch = batch_of(mods)
    grads, scores = _reference_grads(m, batch)
    u = max(range(len(mods)), key=lambda i: float(scores[i]))
    others = [float(scores[i]) for i in range(len(mods)) if i != u]
    rho = float(scores[u]) / (sum(others) / len(others))
    assert rho > 1
    coeff = 1 - math.tanh(0.5 * rho)
    head0 = m.head.weight.detach().clone()
    before = {k: [p.detach().clone() for p in m.encoders[k].parameters()] for k in mods}
    m.train_step(batch, torch.optim.SGD(m.parameters(), lr=1.0))
    assert m.in_window() and int(m.epoch) == -1  # no epoch_batches call yet: epoch 0
    for i, k in enumerate(mods):
        scale = coeff if i == u else 1.0
        for p, p0, g in zip(m.encoders[k].parameters(), before[k], grads[k]):
            torch.testing.assert_close(p.detach() - p0, -scale * g, rtol=1e-5, atol=1e-6)
    assert m.last_coefficients[mods[u]] == pytest.approx(coeff)
    assert not torch.equal(m.head.weight, head0)


def test_ogm_nothing_scaled_outside_window_and_epoch_counting():
    mods = ("audio", "video")
    m = linear_method("ogm_ge", mods, modulation_starts=1, modulation_ends=2)  # GE on
    data = to_tensors({k: torch.randn(4, 5).numpy() for k in mods}, torch.tensor([0, 1, 2, 0]).numpy(), mods)
    gen = torch.Generator().manual_seed(0)
    assert int(m.epoch) == -1
    windows = []
    for _ in range(4):
        m.epoch_batches(data, 2, gen)
        windows.append(m.in_window())
    assert windows == [False, True, True, False]  # epochs 0..3, window [1, 2] inclusive
    m.epoch.fill_(0)
    batch = batch_of(mods)
    grads, _ = _reference_grads(m, batch)
    before = {k: [p.detach().clone() for p in m.encoders[k].parameters()] for k in mods}
    m.train_step(batch, torch.optim.SGD(m.parameters(), lr=1.0))
    assert min(m.last_coefficients.values()) < 1  # a coefficient was computed but not applied
    for k in mods:
        for p, p0, g in zip(m.encoders[k].parameters(), before[k], grads[k]):
            torch.testing.assert_close(p.detach() - p0, -g, rtol=1e-5, atol=1e-6)


def test_ge_noise_has_the_gradient_std():
    torch.manual_seed(0)
    p = nn.Parameter(torch.zeros(200, 200))
    g = torch.randn(200, 200) * 3.0
    p.grad = g.clone()
    modulate_gradients([p], 0.25, noise=True)
    noise = p.grad - 0.25 * g
    assert float(noise.std()) == pytest.approx(float(g.std()), rel=0.02)
    assert abs(float(noise.mean())) < 0.05
    p.grad = g.clone()
    modulate_gradients([p], 0.25, noise=False)
    torch.testing.assert_close(p.grad, 0.25 * g)
    q = nn.Parameter(torch.zeros(1))  # one element: std 0, no NaN
    q.grad = torch.ones(1)
    modulate_gradients([q], 0.5, noise=True)
    assert torch.isfinite(q.grad).all() and float(q.grad) == pytest.approx(0.5, abs=1e-6)


def test_ogm_4d_selection_and_option_errors():
    enc = nn.ModuleDict({"audio": nn.Conv2d(1, 2, 3), "video": nn.Linear(5, 2)})
    m = create_method("ogm_ge", enc, n_classes=3, feature_dim=2, modulated_params="4d")
    assert [p.dim() for p in m.modulated_parameters("audio")] == [4]
    assert m.modulated_parameters("video") == []  # no 4-D weights: a no-op (D18)
    with pytest.raises(ValueError, match="modulated_params"):
        linear_method("ogm_ge", modulated_params="conv")
    with pytest.raises(ValueError, match="unknown option.*beta"):
        linear_method("ogm_ge", beta=1.0)


# --- QMF ------------------------------------------------------------------------------------
def test_qmf_energy_confidence():
    logits = torch.tensor([[0.0, 0.0], [LN3, LN3], [1.0, 2.0]])
    # logsumexp: ln 2, ln 6, ln(e + e^2); / T
    expected = torch.tensor([math.log(2.0), math.log(6.0), math.log(math.e + math.e ** 2)]) / 10
    torch.testing.assert_close(energy_confidence(logits, 10.0), expected)
    torch.testing.assert_close(energy_confidence(logits, 1.0), expected * 10)


def test_qmf_ranking_targets_and_loss():
    history = torch.tensor([0.0, 2.0, 4.0, 1.0, 3.0], dtype=torch.float64)  # cumulative losses
    torch.testing.assert_close(normalise_history(history), history / 4)
    target, margin = ranking_targets(history, torch.tensor([1, 2, 3]))
    # pairs (1,2), (2,3), (3,1): n = 0.5, 1, 0.25
    torch.testing.assert_close(target, torch.tensor([-1.0, 1.0, -1.0], dtype=torch.float64))
    torch.testing.assert_close(margin, torch.tensor([0.5, 0.75, 0.25], dtype=torch.float64))
    conf = torch.tensor([0.0, 1.0, 0.0])
    # relu(t (c_i - c_{i+1}) - d): relu(1 - 0.5) = 0.5, relu(1 - 0.75) = 0.25, relu(0 - 0.25) = 0
    assert float(rank_loss(conf, target, margin)) == pytest.approx(0.25)
    # the same value as QMF's MarginRankingLoss(c, roll(c) + d / t_nonzero, -t) form
    t_nz = torch.where(target == 0, torch.ones_like(target), target).float()
    qmf_form = nn.MarginRankingLoss(margin=0.0)(conf, torch.roll(conf, -1) + margin.float() / t_nz, -target.float())
    assert float(qmf_form) == pytest.approx(0.25)
    # a constant history gives zero targets and margins, hence zero loss (no 0/0)
    t0, d0 = ranking_targets(torch.zeros(4, dtype=torch.float64), torch.tensor([0, 1]))
    assert t0.abs().sum() == 0 and d0.abs().sum() == 0
    assert float(rank_loss(torch.tensor([0.3, 0.1]), t0, d0)) == 0.0


def test_qmf_fused_logits_and_train_step_history():
    mods = ("audio", "video")
    m = linear_method("qmf", mods)
    batch = batch_of(mods)
    feats = m.embed(batch)
    logits = [m.heads[k](feats[k]) for k in mods]
    conf = [torch.logsumexp(lg, 1, keepdim=True) / 10 for lg in logits]
    torch.testing.assert_close(m.predict(batch)["multi"], conf[0] * logits[0] + conf[1] * logits[1])
    # One step: the history gains each sample's unimodal CE; the loss has every term.
    ref = copy.deepcopy(m)
    per = torch.stack([nn.functional.cross_entropy(lg, batch["label"], reduction="none") for lg in logits])
    ce = [nn.functional.cross_entropy(lg, batch["label"]) for lg in logits]
    fused = conf[0].detach() * logits[0] + conf[1].detach() * logits[1]
    ranks = [rank_loss(c.squeeze(1), *ranking_targets(per[i].double(), batch["index"])) for i, c in enumerate(conf)]
    expected = nn.functional.cross_entropy(fused, batch["label"]) + ce[0] + ce[1] + 0.1 * (ranks[0] + ranks[1])
    loss = m.train_step(batch, torch.optim.SGD(m.parameters(), lr=0.1))
    assert loss == pytest.approx(float(expected.detach()), rel=1e-5)
    torch.testing.assert_close(m.history, per.detach().double(), rtol=1e-5, atol=1e-6)
    # Checkpoints carry the history; a fresh model takes its size from the state dict.
    fresh = copy.deepcopy(ref)
    assert fresh.history.shape == (2, 0)
    fresh.load_state_dict(m.state_dict())
    torch.testing.assert_close(fresh.history, m.history)


def test_qmf_history_sized_by_epoch_and_grows():
    mods = ("audio", "video", "text")
    m = linear_method("qmf", mods)
    data = to_tensors({k: torch.randn(10, 5).numpy() for k in mods}, torch.arange(10).numpy() % 3, mods)
    batches = list(m.epoch_batches(data, 4, torch.Generator().manual_seed(0)))
    assert m.history.shape == (3, 10)
    m.history[:, 3] = 7.0
    b = batches[0]
    b["index"] = torch.tensor([11, 12, 13, 14])
    m.train_step(b, torch.optim.SGD(m.parameters(), lr=0.1))
    assert m.history.shape == (3, 15) and float(m.history[0, 3]) == 7.0
    assert (m.history[:, 11:] > 0).all() and (m.history[:, 10] == 0).all()
    with pytest.raises(ValueError, match="unknown option.*lamb"):
        linear_method("qmf", lamb=0.1)
