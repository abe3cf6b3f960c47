"""The Table 1 baselines (sum, film, bigated, ogm_ge, qmf) against hand-computed values.

OGM-GE is checked against plain concat's gradients on the same batch and against an independent
noise draw; the sources and line numbers are in docs/methods/baselines.md."""
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


# --- bigated (OGM-GE's GatedFusion) -------------------------------------------------------
def _bigated(mods=("audio", "video"), **options):
    m = identity_method("bigated", mods, **options)
    set_linear(m.proj["audio"], [[1, 0], [0, 1]], [0, 0])
    set_linear(m.proj["video"], [[1, 0], [0, 1]], [0, 1])  # o_v = v + [0, 1]
    set_linear(m.head, [[1, 1], [1, 0]], [0, 0])
    return m


def test_bigated_two_modalities_hand_values():
    """logits = fc_out(sigmoid(o_a) * o_v) (OGM-GE GatedFusion, x_gate=True)."""
    a, v = torch.tensor([[0.0, LN3]]), torch.tensor([[LN3, 0.0]])
    out = _bigated().predict({"audio": a, "video": v})
    # o_a = [0, ln3] -> gate [1/2, 3/4]; o_v = [ln3, 1]; z = [ln3 / 2, 3/4]
    torch.testing.assert_close(out["multi"], torch.tensor([[0.5 * LN3 + 0.75, 0.5 * LN3]]))
    # audio alone: o_v = its bias [0, 1] -> z = [0, 3/4]
    torch.testing.assert_close(out["audio"], torch.tensor([[0.75, 0.0]]))
    # video alone: o_a = 0 -> gate 1/2 -> z = [ln3 / 2, 1/2]
    torch.testing.assert_close(out["video"], torch.tensor([[0.5 * LN3 + 0.5, 0.5 * LN3]]))
    # reverse (x_gate=False): sigmoid(o_v) * o_a = [sig(ln3) * 0, sig(1) * ln3]
    r = _bigated(reverse=True).predict({"audio": a, "video": v})
    sig1 = math.e / (1 + math.e)
    torch.testing.assert_close(r["multi"], torch.tensor([[sig1 * LN3, 0.0]]))


def test_bigated_three_modalities_chain():
    m = identity_method("bigated", ("audio", "image", "text"), s=1)
    for name in m.modalities:
        set_linear(m.proj[name], [[1.0]], [0.0])
    set_linear(m.head, [[1.0], [-1.0]], [0.0, 0.0])
    out = m.predict({"audio": torch.tensor([[0.0]]), "image": torch.tensor([[LN3]]), "text": torch.tensor([[2.0]])})
    # z1 = sig(0) * ln3 = ln3 / 2; z2 = sig(ln3 / 2) * 2 = 2 sqrt3 / (sqrt3 + 1)
    z2 = 2 * math.sqrt(3) / (math.sqrt(3) + 1)
    torch.testing.assert_close(out["multi"], torch.tensor([[z2, -z2]]))
    # text alone: z1 = sig(0) * 0 = 0, z2 = sig(0) * 2 = 1
    torch.testing.assert_close(out["text"], torch.tensor([[1.0, -1.0]]))
    with pytest.raises(ValueError, match="reverse"):
        identity_method("bigated", ("audio", "video"), reverse="yes")


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
    m = linear_method("ogm_ge", modulated_params="matrices")
    batch = batch_of(("audio", "video"))
    feats = m.embed(batch)
    out = m.predict(batch)
    torch.testing.assert_close(out["video"], feats["video"] @ m.head.weight[:, 4:].T + m.head.bias)
    torch.testing.assert_close(out["audio"], subhead_logits(m.head, feats["audio"], 0, 2) + m.head.bias / 2)


# --- OGM-GE ---------------------------------------------------------------------------------
class TinyConv(nn.Module):
    """conv (4-D weight + bias) -> BatchNorm -> spatial mean -> Linear: one parameter of each kind."""

    def __init__(self, s: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 2)
        self.bn = nn.BatchNorm2d(2)
        self.proj = nn.Linear(2, s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.bn(self.conv(x)).mean((2, 3)))


class Capture(torch.optim.Optimizer):
    """An optimizer whose step records the gradients it is given (and changes nothing)."""

    def __init__(self, model: nn.Module) -> None:
        self.names = [n for n, _ in model.named_parameters()]
        super().__init__(model.parameters(), {})
        self.grads: dict[str, torch.Tensor] = {}

    def step(self, closure=None):
        params = [p for group in self.param_groups for p in group["params"]]
        self.grads = {n: p.grad.clone() for n, p in zip(self.names, params)}


def ogm_and_concat(mods, seed=0, n_classes=3, **options):
    """An ogm_ge model and a plain concat model with identical encoders and head."""
    torch.manual_seed(seed)
    enc = nn.ModuleDict({m: TinyConv() for m in mods})
    ogm = create_method("ogm_ge", copy.deepcopy(enc), n_classes=n_classes, feature_dim=3, **options)
    cat = create_method("concat", copy.deepcopy(enc), n_classes=n_classes, feature_dim=3)
    cat.head.load_state_dict(ogm.head.state_dict())
    return ogm, cat


def conv_batch(mods, n=6, n_classes=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    out = {m: torch.randn(n, 1, 3, 3, generator=g) for m in mods}
    out["label"] = torch.randint(0, n_classes, (n,), generator=g)
    return out


def concat_grads_and_scores(cat, batch):
    """Plain concat's gradients, and OGM-GE's scores computed as its main.py L88-106 does:
    per-modality logits from the head's slice plus bias / M, then a per-sample loop."""
    opt = Capture(cat)
    cat.train_step(batch, opt)
    feats = [cat.encoders[m](batch[m]).detach() for m in cat.modalities]
    s, n = feats[0].shape[1], len(feats)
    scores = []
    for i, f in enumerate(feats):
        out = f @ cat.head.weight[:, i * s:(i + 1) * s].detach().T + cat.head.bias.detach() / n
        p = torch.softmax(out, 1)
        scores.append(sum(float(p[j][batch["label"][j]]) for j in range(len(f))))
    return opt.grads, scores


def test_ogm_rho_and_coefficient_hand_computed_tiny_batch():
    """s_m from the sub-head with bias / 2 (OGM-GE main.py L88-106), k = 1 - tanh(alpha * rho)."""
    with pytest.warns(UserWarning, match="selects no parameter"):
        m = identity_method("ogm_ge", ("audio", "video"), s=1, alpha=0.8)
    set_linear(m.head, [[LN3, 0.0], [0.0, 0.0]], [0.0, 2 * LN3])  # bias / 2 = [0, ln3]
    feats = {"audio": torch.tensor([[2.0], [0.0]]), "video": torch.tensor([[5.0], [-1.0]])}
    labels = torch.tensor([0, 1])
    # audio logits [2 ln3, ln3] -> p(0) = 3/4; [0, ln3] -> p(1) = 3/4: s_a = 1.5
    # video logits = bias / 2 = [0, ln3]: p(0) = 1/4, p(1) = 3/4: s_v = 1.0
    k = m.coefficients(feats, labels)
    torch.testing.assert_close(k, torch.tensor([1 - math.tanh(0.8 * 1.5), 1.0], dtype=torch.float64))


def test_ogm_coefficients_two_modalities():
    labels = torch.tensor([0, 1])
    audio = torch.tensor([[LN3, 0.0], [0.0, 0.0]])  # p(y) = 3/4, 1/2
    video = torch.zeros(2, 2)  # p(y) = 1/2, 1/2
    s = true_class_scores([audio, video], labels)
    torch.testing.assert_close(s, torch.tensor([1.25, 1.0]))
    k = ogm_coefficients(s, alpha=0.3)  # rho_a = 1.25: audio modulated, 1 - tanh(0.3 * 1.25)
    torch.testing.assert_close(k, torch.tensor([1 - math.tanh(0.375), 1.0], dtype=torch.float64))
    k = ogm_coefficients(torch.tensor([1.0, 1.25]), alpha=0.8)  # video dominant
    torch.testing.assert_close(k, torch.tensor([1.0, 1 - math.tanh(1.0)], dtype=torch.float64))
    # tie: OGM-GE's else branch (ratio_v = 1 is not > 1) modulates audio with 1 - tanh(alpha)
    k = ogm_coefficients(torch.tensor([1.0, 1.0]), alpha=0.3)
    torch.testing.assert_close(k, torch.tensor([1 - math.tanh(0.3), 1.0], dtype=torch.float64))


def test_ogm_coefficients_three_modalities():
    labels = torch.tensor([0, 0])
    a = torch.tensor([[math.log(9.0), 0.0]] * 2)  # p(y) = 0.9 -> s = 1.8
    v = torch.tensor([[0.0, LN3]] * 2)  # 0.25 -> 0.5
    t = torch.tensor([[0.0, math.log(4.0)]] * 2)  # 0.2 -> 0.4
    s = true_class_scores([a, v, t], labels)
    torch.testing.assert_close(s, torch.tensor([1.8, 0.5, 0.4]))
    # rho = 1.8 / (0.5 + 0.4) = 2 (the MLA code's ratio over the sum of the others)
    torch.testing.assert_close(ogm_coefficients(s, 0.3), torch.tensor([1 - math.tanh(0.6), 1, 1], dtype=torch.float64))
    # image dominant but below the sum of the others: 1.0 / (0.5 + 0.9) < 1 -> nothing modulated
    s2 = torch.tensor([0.5, 1.0, 0.9])
    torch.testing.assert_close(ogm_coefficients(s2, 0.3), torch.ones(3, dtype=torch.float64))
    # with the mean of the others: rho = 1.0 / 0.7
    torch.testing.assert_close(ogm_coefficients(s2, 0.3, "mean"),
                               torch.tensor([1, 1 - math.tanh(0.3 / 0.7), 1], dtype=torch.float64))


@pytest.mark.parametrize("mods", [("audio", "video"), ("audio", "image", "text")])
def test_ogm_scales_only_dominant_conv_weights_rest_bit_identical_to_concat(mods):
    ogm, cat = ogm_and_concat(mods, gaussian_enhancement=False, alpha=0.5)
    with torch.no_grad():  # make audio dominant: a large head slice, labels = its predictions
        ogm.head.weight[:, :3] *= 20
    cat.head.load_state_dict(ogm.head.state_dict())
    batch = conv_batch(mods)
    probe = copy.deepcopy(cat)
    batch["label"] = subhead_logits(probe.head, probe.encoders["audio"](batch["audio"]), 0, len(mods)).argmax(1)
    ref, scores = concat_grads_and_scores(cat, batch)
    u = max(range(len(mods)), key=lambda i: scores[i])
    rho = scores[u] / (sum(scores) - scores[u])
    assert rho > 1, "the fixture must have a dominant modality"
    coeff = 1 - math.tanh(0.5 * rho)
    opt = Capture(ogm)
    ogm.train_step(batch, opt)
    assert ogm.in_window() and int(ogm.epoch) == -1  # no epoch_batches call yet: epoch 0
    assert set(opt.grads) == set(ref)
    for name, g in opt.grads.items():
        if name == f"encoders.{mods[u]}.conv.weight":  # the only 4-D gradient of the dominant encoder
            torch.testing.assert_close(g, coeff * ref[name], rtol=1e-6, atol=0)
            assert not torch.equal(g, ref[name])
        else:  # conv bias, BatchNorm, the encoders' Linear, the head, the other encoders
            assert torch.equal(g, ref[name]), name
    assert ogm.last_coefficients[mods[u]] == pytest.approx(coeff, rel=1e-6)


def test_ge_noise_std_of_unscaled_gradient_on_every_encoder():
    """g * k + N(0, std(g) + 1e-8) on each selected parameter, drawn from torch's generator in
    parameter order (OGM-GE main.py L136-146), compared with an independent draw."""
    mods = ("audio", "video")
    ogm, cat = ogm_and_concat(mods, alpha=0.5)
    batch = conv_batch(mods)
    ref, scores = concat_grads_and_scores(cat, batch)
    k = [1.0, 1.0]
    u = 0 if scores[0] >= scores[1] else 1
    k[u] = 1 - math.tanh(0.5 * scores[u] / scores[1 - u])
    torch.manual_seed(123)
    opt = Capture(ogm)
    ogm.train_step(batch, opt)
    torch.manual_seed(123)
    for i, m in enumerate(mods):
        name = f"encoders.{m}.conv.weight"
        g = ref[name]
        noise = torch.empty_like(g).normal_(0.0, float(g.std()) + 1e-8)
        torch.testing.assert_close(opt.grads[name], g * k[i] + noise, rtol=1e-5, atol=1e-7)
    for name, g in opt.grads.items():
        if not name.endswith("conv.weight"):
            assert torch.equal(g, ref[name]), name


def test_modulate_gradients_with_a_generator_and_one_element():
    g = torch.tensor([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]])
    p = nn.Parameter(torch.zeros(2, 3))
    p.grad = g.clone()
    modulate_gradients([p], 0.25, noise=True, generator=torch.Generator().manual_seed(7))
    expected = 0.25 * g + torch.empty(2, 3).normal_(0.0, float(g.std()) + 1e-8,
                                                    generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(p.grad, expected)
    # std is torch's unbiased std of the unscaled gradient: 6 values, not 5 / 6 of it
    assert float(g.std()) == pytest.approx(math.sqrt(sum((x - 1.5 / 6) ** 2 for x in g.flatten().tolist()) / 5))
    p.grad = g.clone()
    modulate_gradients([p], 0.25, noise=False)
    torch.testing.assert_close(p.grad, 0.25 * g)
    q = nn.Parameter(torch.zeros(1))  # one element: std 0, no NaN
    q.grad = torch.ones(1)
    modulate_gradients([q], 0.5, noise=True)
    assert torch.isfinite(q.grad).all() and float(q.grad) == pytest.approx(0.5, abs=1e-6)
    # a zero gradient still gets N(0, 1e-8): the "+ 1e-8" of OGM-GE's std
    z = nn.Parameter(torch.zeros(4, 4))
    z.grad = torch.zeros(4, 4)
    modulate_gradients([z], 0.5, noise=True, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(z.grad, torch.empty(4, 4).normal_(0.0, 1e-8, generator=torch.Generator().manual_seed(3)),
                               rtol=1e-6, atol=0)
    assert float(z.grad.abs().max()) > 0


def test_ogm_window_inclusive_and_plain_concat_outside():
    mods = ("audio", "video")
    ogm, cat = ogm_and_concat(mods, modulation_starts=1, modulation_ends=2)  # GE on
    data = to_tensors({k: torch.randn(4, 1, 3, 3).numpy() for k in mods}, torch.tensor([0, 1, 2, 0]).numpy(), mods)
    gen = torch.Generator().manual_seed(0)
    assert int(ogm.epoch) == -1
    windows = []
    for _ in range(4):
        ogm.epoch_batches(data, 2, gen)
        windows.append(ogm.in_window())
    assert windows == [False, True, True, False]  # epochs 0..3, window [1, 2] inclusive
    batch = conv_batch(mods)
    ref, _ = concat_grads_and_scores(cat, batch)
    opt = Capture(ogm)
    ogm.train_step(batch, opt)  # epoch 3: outside
    assert min(ogm.last_coefficients.values()) < 1  # a coefficient was computed but not applied
    for name, g in opt.grads.items():
        assert torch.equal(g, ref[name]), name  # no scaling, no noise
    ogm.epoch.fill_(2)  # the last epoch of the window
    ogm.train_step(batch, opt)
    assert not torch.equal(opt.grads["encoders.video.conv.weight"], ref["encoders.video.conv.weight"])


def test_ogm_parameter_selection_rules_and_option_errors():
    ogm, _ = ogm_and_concat(("audio", "video"))
    shapes = lambda rule: [tuple(p.shape) for p in ogm_and_concat(("audio", "video"), modulated_params=rule)[0]
                           .modulated_parameters("audio")]
    assert [tuple(p.shape) for p in ogm.modulated_parameters("audio")] == [(2, 1, 2, 2)]  # default 4d
    assert shapes("matrices") == [(2, 1, 2, 2), (3, 2)]  # conv kernel and Linear weight, no biases or BN
    assert len(shapes("all")) == 6  # conv w/b, BN w/b, Linear w/b
    with pytest.warns(UserWarning, match="selects no parameter of the video encoder.*matrices"):
        m = create_method("ogm_ge", nn.ModuleDict({"audio": nn.Conv2d(1, 2, 3), "video": nn.Linear(5, 2)}),
                          n_classes=3, feature_dim=2)
    assert m.unmodulated == ["video"]
    with pytest.raises(ValueError, match="modulated_params"):
        linear_method("ogm_ge", modulated_params="conv")
    with pytest.raises(ValueError, match="unknown option.*beta"):
        linear_method("ogm_ge", beta=1.0)


# --- per-dataset method options (method_options.<m>.datasets.<d>) ------------------------------
def test_per_dataset_method_options_merge_and_errors():
    from pathlib import Path

    from mla import config

    root = Path(__file__).resolve().parents[1]
    paper = config.load(root / "config" / "paper.yaml")
    assert config.method_options_for(paper, "ogm_ge", "cremad")["alpha"] == 0.8  # OGM-GE README, CREMA-D
    assert config.method_options_for(paper, "ogm_ge", "ks")["alpha"] == 0.1  # the README's default setting
    for d in ("cremad", "ks"):
        assert config.method_options_for(paper, "ogm_ge", d)["modulated_params"] == "4d"
    for d in ("food101", "mvsa", "iemocap"):
        assert config.method_options_for(paper, "ogm_ge", d)["modulated_params"] == "matrices"
    assert "datasets" not in config.method_options_for(paper, "ogm_ge", "cremad")
    assert config.method_options_for(paper, "sum", "cremad") == {}
    cfg = copy.deepcopy(paper)
    cfg["method_options"]["ogm_ge"]["datasets"]["cremad"]["alpha"] = 0.5
    assert config.method_options_for(cfg, "ogm_ge", "cremad")["alpha"] == 0.5
    assert paper["method_options"]["ogm_ge"]["datasets"]["cremad"]["alpha"] == 0.8  # a copy, not a view
    cfg["method_options"]["ogm_ge"]["datasets"]["cremd"] = {"alpha": 0.5}
    with pytest.raises(config.ConfigError, match=r"method_options\.ogm_ge\.datasets\.cremd: unknown dataset"):
        config.validate(cfg)
    cfg = copy.deepcopy(paper)
    cfg["method_options"]["ogm_ge"]["datasets"]["cremad"] = 0.8
    with pytest.raises(config.ConfigError, match=r"method_options\.ogm_ge\.datasets\.cremad"):
        config.validate(cfg)


def test_training_builds_ogm_ge_with_the_dataset_options():
    """train.build_method applies method_options.ogm_ge.datasets.builtin_it (matrices for the text
    transformer), so no encoder is left unmodulated."""
    from pathlib import Path

    from tiny import tiny_config, tiny_dataset, training_jobs

    from mla import train

    cfg = tiny_config(Path(__file__).resolve().parents[1])
    job = next(j for j in training_jobs(cfg) if j.method == "ogm_ge")
    method = train.build_method(cfg, job, tiny_dataset(), ("image", "text"))
    assert method.options["modulated_params"] == "matrices" and method.unmodulated == []
    assert method.options["alpha"] == cfg["method_options"]["ogm_ge"]["alpha"]


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


def test_qmf_state_dict_resizes_history_and_tolerates_its_absence():
    """Loading resizes the history buffer to the stored one; a state without it (strict=False)
    leaves the current history as it is."""
    src = linear_method("qmf", seed=0)
    src.ensure_history(6)
    src.history[1, 4] = 2.5
    dst = linear_method("qmf", seed=1)
    dst.load_state_dict(src.state_dict())
    assert dst.history.shape == (2, 6) and float(dst.history[1, 4]) == 2.5
    fresh = linear_method("qmf", seed=2)
    fresh.ensure_history(3)
    partial = {k: v for k, v in src.state_dict().items() if k != "history"}
    result = fresh.load_state_dict(partial, strict=False)
    assert result.missing_keys == ["history"] and fresh.history.shape == (2, 3) and not fresh.history.any()


def test_qmf_helpers_defaults_offsets_and_dtypes():
    logits = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    torch.testing.assert_close(energy_confidence(logits), torch.tensor([math.log(2.0), math.log(math.e + math.e ** 2)]) / 10)
    # min-max with a non-zero minimum: (h - min) / (max - min)
    torch.testing.assert_close(normalise_history(torch.tensor([4.0, 2.0, 6.0, 5.0], dtype=torch.float64)),
                               torch.tensor([0.5, 0.0, 1.0, 0.75], dtype=torch.float64))
    # float64 history targets do not turn a float32 confidence's loss into float64; relu(1 - 0.5) both pairs
    out = rank_loss(torch.tensor([0.0, 1.0]), torch.tensor([-1.0, 1.0], dtype=torch.float64),
                    torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert out.dtype == torch.float32 and float(out) == pytest.approx(0.5)
    with pytest.raises(ValueError) as err:
        linear_method("qmf", temperature=0)
    assert str(err.value) == "method qmf: temperature must be > 0, got 0"
    assert linear_method("qmf", temperature=0.5).options["temperature"] == 0.5


def test_qmf_loss_with_active_rank_terms_temperature_and_lambda():
    """QMF's loss written out independently, with a history whose outlier makes the batch's margins
    tiny, so the rank terms are active; temperature 2 and lambda 0.5 (not the defaults)."""
    mods, T, lam = ("audio", "video"), 2.0, 0.5
    m = linear_method("qmf", mods, temperature=T, lam=lam)
    batch = batch_of(mods)
    m.ensure_history(10)
    with torch.no_grad():
        m.history[:, 9] = 1000.0
    logits = [m.heads[k](m.encoders[k](batch[k])).detach().double() for k in mods]
    y = batch["label"]

    def ce_rows(z):  # -log softmax(z)[y], per row
        return torch.logsumexp(z, 1) - z[torch.arange(len(y)), y]

    conf = [torch.logsumexp(z, 1) / T for z in logits]
    fused = conf[0][:, None] * logits[0] + conf[1][:, None] * logits[1]
    rank_total = 0.0
    for i, z in enumerate(logits):
        hist = m.history[i].clone()
        hist[batch["index"]] += ce_rows(z)
        n = (hist - hist.min()) / (hist.max() - hist.min())
        nb = n[batch["index"]]
        for j in range(len(y)):
            k = (j + 1) % len(y)
            t = float(torch.sign(nb[j] - nb[k]))
            rank_total += max(0.0, t * float(conf[i][j] - conf[i][k]) - float(abs(nb[j] - nb[k]))) / len(y)
    assert rank_total > 0.01
    expected = float(ce_rows(fused).mean() + ce_rows(logits[0]).mean() + ce_rows(logits[1]).mean()) + lam * rank_total
    loss = m.train_step(batch, torch.optim.SGD(m.parameters(), lr=0.1))
    assert loss == pytest.approx(expected, rel=1e-5)


def test_modulate_gradients_skips_parameters_without_gradient_and_two_elements():
    """A parameter without a gradient is skipped and the ones after it are still modulated; a
    two-element gradient gets noise of its own std (|a - b| / sqrt 2, unbiased), not 1e-8."""
    none = nn.Parameter(torch.zeros(3))
    two = nn.Parameter(torch.zeros(2))
    two.grad = torch.tensor([1.0, 3.0])
    modulate_gradients([none, two], 0.5, noise=True, generator=torch.Generator().manual_seed(11))
    assert none.grad is None
    draw = torch.empty(2).normal_(0.0, 1.0, generator=torch.Generator().manual_seed(11))
    torch.testing.assert_close(two.grad, torch.tensor([0.5, 1.5]) + draw * (math.sqrt(2.0) + 1e-8))


def test_ogm_ge_method_uses_its_ratio_others_option():
    """Three modalities, ratio_others="mean": rho = s_u / mean of the others, k_u = 1 - tanh(alpha rho)."""
    mods = ("audio", "image", "text")
    for rule in ("sum", "mean"):
        m = identity_method("ogm_ge", mods, s=2, n_classes=2, alpha=0.5, ratio_others=rule)
        with torch.no_grad():
            m.head.weight.copy_(torch.tensor([[2.0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]]))
            m.head.bias.zero_()
        feats = {"audio": torch.tensor([[1.0, 0.0]]), "image": torch.zeros(1, 2), "text": torch.zeros(1, 2)}
        k = m.coefficients(feats, torch.tensor([0]))
        # audio's sub-head gives (2, 0): p(y=0) = e^2 / (e^2 + 1); the others (0, 0): 1/2 each
        s_a = math.exp(2) / (math.exp(2) + 1)
        rho = s_a / (1.0 if rule == "sum" else 0.5)  # sum: 0.88 < 1, audio not modulated; mean: 1.76
        k_a = 1 - math.tanh(0.5 * rho) if rho >= 1 else 1.0
        assert (k_a < 1) == (rule == "mean")
        torch.testing.assert_close(k, torch.tensor([k_a, 1.0, 1.0], dtype=torch.float64))


def test_ogm_ge_warns_per_unmodulated_encoder_naming_it_and_the_setting():
    mods = ("audio", "video")
    with pytest.warns(UserWarning) as record:
        m = identity_method("ogm_ge", mods)  # Identity encoders: no parameter at all
    assert [str(w.message) for w in record] == [
        f"method ogm_ge: modulated_params='4d' selects no parameter of the {mod} encoder (Identity), so OGM-GE "
        "never modulates it; set method_options.ogm_ge.modulated_params (or method_options.ogm_ge.datasets."
        "<dataset>.modulated_params) to 'matrices' for encoders without convolution kernels" for mod in mods]
    assert m.unmodulated == list(mods) and m.last_coefficients == {} and int(m.epoch) == -1


def test_deactivate_unknown_modality_names_the_features():
    feats = {"audio": torch.ones(2, 3), "video": torch.ones(2, 3)}
    with pytest.raises(KeyError) as err:
        deactivate(feats, "text")
    assert err.value.args[0] == "cannot keep modality 'text'; features have audio, video"
