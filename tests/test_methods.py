"""MLA's equations, fusion, and every registered method on 2 and 3 modalities."""
from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch
from torch import nn

from mla import catalog
from mla.batches import to_tensors
from mla.fusion import entropy, entropy_weights, fuse, uniform_weights
from mla.methods import METHODS, create_method
from mla.methods.concat import subhead_logits
from mla.methods.mla import rls_update
from mla.models.encoders import create_encoder


def linear_encoders(mods=("audio", "video"), d_in=5, s=4, seed=0):
    torch.manual_seed(seed)
    return nn.ModuleDict({m: nn.Linear(d_in, s) for m in mods})


def test_rls_identity_and_projection():
    """P_t h = alpha / (alpha + h^T P_{t-1} h) * P_{t-1} h  (Eq. 5 with the scalar denominator)."""
    g = torch.Generator().manual_seed(1)
    a = torch.randn(6, 6, generator=g, dtype=torch.float64)
    P = a @ a.T + torch.eye(6, dtype=torch.float64)  # symmetric positive definite
    h = torch.randn(6, generator=g, dtype=torch.float64)
    alpha = 0.3
    Pt = rls_update(P, h, alpha)
    expected = alpha / (alpha + h @ P @ h) * (P @ h)
    torch.testing.assert_close(Pt @ h, expected)
    torch.testing.assert_close(Pt, Pt.T)  # symmetric P stays symmetric
    # From P0 = I with a tiny alpha, P_1 nearly annihilates h: the update is orthogonal to it.
    P1 = rls_update(torch.eye(6, dtype=torch.float64), h, 1e-8)
    assert (P1 @ h).norm() < 1e-6 * h.norm()


def _batch(mod, n=8, d_in=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {mod: torch.randn(n, d_in, generator=g), "label": torch.randint(0, 3, (n,), generator=g)}


def _mla(hgm: bool):
    m = create_method("mla", linear_encoders(), n_classes=3, feature_dim=4, hgm=hgm,
                      alpha_schedule="constant", alpha=0.5)
    return m


def test_mla_hgm_step_projects_head_gradient_and_leaves_other_encoder():
    lr = 0.1
    base = _mla(True)
    opt = torch.optim.SGD(base.parameters(), lr=lr)
    base.train_step(_batch("audio", seed=1), opt)  # t = 0: plain step, P stays I
    torch.testing.assert_close(base.P, torch.eye(4, dtype=torch.float64))
    assert base.current_modality() == "video"  # m_t = t mod M

    batch = _batch("video", seed=2)
    on, off = copy.deepcopy(base), copy.deepcopy(base)
    off.options["hgm"] = False
    # Hand computation of the gradient and of P_1 from the same state.
    ref = copy.deepcopy(base)
    feats = ref.encoders["video"](batch["video"])
    nn.functional.cross_entropy(ref.head(feats), batch["label"]).backward()
    grad_w = ref.head.weight.grad.detach().double()
    h = feats.detach().double().mean(0)
    P1 = torch.eye(4, dtype=torch.float64) - torch.outer(h, h) / (0.5 + h @ h)

    results = {}
    for name, m in (("on", on), ("off", off)):
        w0 = m.head.weight.detach().clone().double()
        audio0 = [p.detach().clone() for p in m.encoders["audio"].parameters()]
        m.train_step(batch, torch.optim.SGD(m.parameters(), lr=lr))
        results[name] = m.head.weight.detach().double() - w0
        for p, p0 in zip(m.encoders["audio"].parameters(), audio0):
            assert torch.equal(p, p0), "a video step moved the audio encoder"
    torch.testing.assert_close(on.P, P1)
    torch.testing.assert_close(results["on"], -lr * grad_w @ P1, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(results["off"], -lr * grad_w, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(results["on"], results["off"])


def test_mla_previous_order_projects_with_previous_P():
    m = create_method("mla", linear_encoders(), n_classes=3, feature_dim=4, hgm_order="previous",
                      alpha_schedule="constant", alpha=0.5)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    m.train_step(_batch("audio", seed=1), opt)
    w0 = m.head.weight.detach().clone()
    ref = copy.deepcopy(m)
    batch = _batch("video", seed=2)
    feats = ref.encoders["video"](batch["video"])
    nn.functional.cross_entropy(ref.head(feats), batch["label"]).backward()
    m.train_step(batch, opt)
    # P_{t-1} = I: the update is the plain gradient step, and P has moved for the next step to
    # P_1 = I - h hᵀ / (alpha + hᵀh), h the video features' mean (the first video batch).
    torch.testing.assert_close(m.head.weight.detach() - w0, -0.1 * ref.head.weight.grad, rtol=1e-5, atol=1e-7)
    h = feats.detach().double().mean(0)
    torch.testing.assert_close(m.P, torch.eye(4, dtype=torch.float64) - torch.outer(h, h) / (0.5 + h @ h))


def test_entropy_fusion_weights_per_example():
    logits = torch.tensor([
        [[4.0, 0.0, 0.0], [0.1, 0.0, 0.0]],   # modality 0: confident on example 0, unsure on 1
        [[0.2, 0.1, 0.0], [0.0, 5.0, 0.0]],   # modality 1: the reverse
    ])
    w = entropy_weights(logits)
    assert w.shape == (2, 2)  # one weight per modality per example (row)
    torch.testing.assert_close(w.sum(0), torch.ones(2))
    e = entropy(logits)
    assert e[0, 0] < e[1, 0] and w[0, 0] > w[1, 0]
    assert e[1, 1] < e[0, 1] and w[1, 1] > w[0, 1]
    # Eq. (8) literally: exp(max_m' e - e_m) / sum_v exp(max e - e_v).
    lit = torch.exp(e.max(0).values - e) / torch.exp(e.max(0).values - e).sum(0)
    torch.testing.assert_close(w, lit)
    # Renormalised over present modalities: an absent modality gets weight 0.
    present = torch.tensor([[True, True], [False, True]])
    wp = entropy_weights(logits, present)
    assert wp[1, 0] == 0 and wp[0, 0] == 1
    torch.testing.assert_close(wp.sum(0), torch.ones(2))
    u = uniform_weights(logits, present)
    torch.testing.assert_close(u, torch.tensor([[1.0, 0.5], [0.0, 0.5]]))
    torch.testing.assert_close(fuse(logits, u)[0], logits[0, 0])


def test_concat_subhead_slicing():
    head = nn.Linear(6, 2)
    with torch.no_grad():
        head.weight.copy_(torch.arange(12.0).view(2, 6))
        head.bias.copy_(torch.tensor([3.0, -3.0]))
    f = torch.tensor([[1.0, 0.0, 2.0]])
    out = subhead_logits(head, f, 1, 2)  # second modality: columns 3..5, bias / 2
    torch.testing.assert_close(out, torch.tensor([[3 + 2 * 5 + 1.5, 9 + 2 * 11 - 1.5]]))


def _tiny_data(mods, n=24, seed=0):
    rng = np.random.default_rng(seed)
    shapes = {"audio": (1, 16, 16), "video": (2, 3, 16, 16), "image": (3, 16, 16)}
    arrays = {}
    for m in mods:
        if m == "text":
            arrays[m] = rng.integers(0, 30, size=(n, 8))
        elif m == "audio":
            arrays[m] = rng.normal(size=(n, *shapes[m])).astype(np.float32)
        else:
            arrays[m] = rng.integers(0, 255, size=(n, *shapes[m]), dtype=np.uint8)
    return to_tensors(arrays, rng.integers(0, 3, size=n), tuple(mods))


def _encoders(mods, s=16):
    spec = {"audio": {"name": "resnet18", "width": 2, "stem": "small"},
            "video": {"name": "resnet18", "width": 2, "stem": "small"},
            "image": {"name": "resnet18", "width": 2, "stem": "small"},
            "text": {"name": "text_transformer", "vocab_size": 30, "max_len": 8, "heads": 2}}
    return nn.ModuleDict({m: create_encoder(m, s, spec[m]) for m in mods})


@pytest.mark.parametrize("name", METHODS.names())
@pytest.mark.parametrize("mods", [("audio", "video"), ("audio", "image", "text")])
def test_every_method_trains_on_two_and_three_modalities(name, mods):
    assert name in catalog.METHODS, "registered methods must be in the catalog"
    if catalog.METHODS[name].per_modality:
        mods = mods[:1]
    torch.manual_seed(0)
    method = create_method(name, _encoders(mods), n_classes=3, feature_dim=16)
    data = _tiny_data(mods)
    before = [p.detach().clone() for p in method.parameters()]
    opt = torch.optim.SGD(method.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    losses = [method.train_step(b, opt) for b in method.epoch_batches(data, 8, gen)]
    assert losses and all(np.isfinite(losses))
    assert any(not torch.equal(p, q) for p, q in zip(method.parameters(), before))
    method.eval()
    out = method.predict(data.batch(torch.arange(5)))
    assert out["multi"].shape == (5, 3)
    for m in mods:
        assert out[m].shape == (5, 3)


def test_catalog_and_registry_agree():
    assert set(METHODS.names()) == set(catalog.METHODS)


def test_method_option_and_modality_count_errors():
    with pytest.raises(ValueError, match="unknown option.*hgm_typo"):
        create_method("mla", linear_encoders(), n_classes=3, feature_dim=4, hgm_typo=True)
    with pytest.raises(ValueError, match="hbar='dataset'"):
        create_method("mla", linear_encoders(), n_classes=3, feature_dim=4, hbar="dataset")
    with pytest.raises(ValueError, match="supports \\(1,\\) modalities, got 2"):
        create_method("unimodal", linear_encoders(), n_classes=3, feature_dim=4)
    with pytest.raises(KeyError, match="valid names: " + re.escape(", ".join(sorted(catalog.METHODS)))):
        create_method("magic", linear_encoders(), n_classes=3, feature_dim=4)


def test_training_batches_use_every_example_and_never_one():
    from mla.batches import shuffled_batches

    for n in (129, 130, 64, 1):
        data = to_tensors({"text": np.zeros((n, 4), dtype=np.int64)}, np.arange(n) % 3, ("text",))
        sizes = [len(b["label"]) for b in shuffled_batches(data, 64, torch.Generator().manual_seed(0))]
        assert sum(sizes) == n
        assert n == 1 or min(sizes) > 1


def test_uniform_weights_in_the_logits_precision():
    logits = torch.zeros(3, 2, 4, dtype=torch.float64)
    w = uniform_weights(logits, torch.tensor([[True, True], [True, False], [True, True]]))
    assert w.dtype == torch.float64
    assert torch.equal(w, torch.tensor([[1 / 3, 0.5], [1 / 3, 0.0], [1 / 3, 0.5]], dtype=torch.float64))


def test_mla_epoch_of_one_batch_per_modality_is_one_round():
    """When every modality's data fits in one batch, an epoch is one round: M steps, one each."""
    for mods in (("audio", "video"), ("audio", "image", "text")):
        m = _mla(False) if len(mods) == 2 else create_method(
            "mla", linear_encoders(mods), n_classes=3, feature_dim=4, hgm=False)
        data = to_tensors({k: np.zeros((6, 5), dtype=np.float32) for k in mods}, np.zeros(6, dtype=np.int64), mods)
        batches = list(m.epoch_batches(data, 8, torch.Generator().manual_seed(0)))
        assert [sorted(b) for b in batches] == [sorted(["label", "index", "present", k]) for k in mods]


def test_fusion_weights_when_an_example_or_a_modality_has_nothing():
    """An example with no modality at all uses every (zeroed) modality; a modality absent from every
    example still gets weight 0 where the example has another one."""
    logits = torch.tensor([[[2.0, 0.0], [1.0, 1.0], [0.0, 3.0]],
                           [[0.0, 0.0], [4.0, 0.0], [1.0, 0.0]],
                           [[1.0, 1.0], [0.0, 0.0], [5.0, 5.0]]])  # (M=3, B=3, C=2)
    present = torch.tensor([[True, False, False], [False, False, True], [False, False, False]])  # (M, B)
    # example 0: only modality 0; example 1: none (all three count); example 2: only modality 1;
    # modality 2 is absent from every example.
    torch.testing.assert_close(uniform_weights(logits, present),
                               torch.tensor([[1.0, 1 / 3, 0.0], [0.0, 1 / 3, 1.0], [0.0, 1 / 3, 0.0]]))
    w = entropy_weights(logits, present)
    e = entropy(logits[:, 1])  # example 1: softmax of -entropy over all three modalities
    torch.testing.assert_close(w[:, 1], torch.softmax(-e, 0))
    torch.testing.assert_close(w[:, [0, 2]], torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
