"""CPM-Net and TATE (Table 2 missing-modality baselines) on fixed features: defining computations
against hand-computed values, and absent modalities never read."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from mla.methods.base import METHODS, create_method
from mla.methods.cpm_net import class_mean_similarity, reconstruction_loss, structured_loss
from mla.methods.tate import missing_tag, symmetric_kl



def identity_encoders(modalities) -> nn.ModuleDict:
    return nn.ModuleDict({m: nn.Identity() for m in modalities})


def feature_batch(modalities, n=24, s=6, n_classes=3, seed=0, fill=float("nan")) -> dict:
    """Class-dependent features; every sample keeps one modality at least; absent entries = ``fill``."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % n_classes
    present = torch.rand(n, len(modalities), generator=g) > 0.4
    present[torch.arange(n), torch.randint(0, len(modalities), (n,), generator=g)] = True
    batch = {"label": labels, "index": torch.arange(n), "present": present}
    for i, m in enumerate(modalities):
        x = torch.randn(n, s, generator=g) + labels.unsqueeze(1).float()
        batch[m] = torch.where(present[:, i:i + 1], x, torch.full_like(x, fill))
    return batch


def tensors(obj):
    """Every tensor inside a (nested) state dict, with its path."""
    if torch.is_tensor(obj):
        yield "", obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            for path, t in tensors(v):
                yield f"{k}/{path}", t
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            for path, t in tensors(v):
                yield f"{i}/{path}", t


def snapshot(method: nn.Module) -> dict[str, torch.Tensor]:
    return {k: t.clone() for k, t in tensors(method.state_dict())}


# --- catalog literals -----------------------------------------------------------------------------
# --- CPM-Net ------------------------------------------------------------------------------------
def test_cpm_reconstruction_counts_only_present_views():
    # recon = h for both views; views a = [[1, 1], [0, 0]], b = [[2, 2], absent]
    h = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    views = {"a": torch.tensor([[1.0, 1.0], [0.0, 0.0]]), "b": torch.tensor([[2.0, 2.0], [math.nan, math.nan]])}
    present = torch.tensor([[True, True], [True, False]])
    # (0 + 1) + (1 + 0) + (9 + 16); sample 1's view b is absent
    loss = reconstruction_loss({"a": h, "b": h}, views, present)
    assert loss.item() == 27.0
    h = h.clone().requires_grad_(True)
    reconstruction_loss({"a": h, "b": h}, views, present).backward()
    assert torch.isfinite(h.grad).all()
    # d/dh of ||h0-a0||^2 + ||h0-b0||^2 + ||h1-a1||^2: 2(h0-a0) + 2(h0-b0) = (0, 2) + (-2, 0), 2(h1-a1)
    assert torch.equal(h.grad, torch.tensor([[-2.0, 2.0], [6.0, 8.0]]))


def test_cpm_structured_loss_hand_computed():
    # h = [1, 2, -1, 4] (k = 1), labels [0, 0, 1, 1]; per sample (class means without itself):
    # n0: mu = (2, 1.5) right, 0;  n1: mu = (2, 3) wrong, 1 + 3 - 2 = 2
    # n2: mu = (-1.5, -4) wrong, 1 - 1.5 + 4 = 3.5;  n3: mu = (6, -4) wrong, 1 + 6 + 4 = 11
    h = torch.tensor([[1.0], [2.0], [-1.0], [4.0]])
    labels = torch.tensor([0, 0, 1, 1])
    assert structured_loss(h, labels, 2).item() == 16.5
    assert structured_loss(h, labels, 3).item() == 16.5  # a class without samples is left out
    assert structured_loss(h, labels, 2, rows=torch.tensor([3, 1])).item() == 13.0  # terms of n3 and n1
    with pytest.raises(ValueError, match=r"class\(es\) \[2\] have a single training sample"):
        structured_loss(torch.cat([h, torch.zeros(1, 1)]), torch.tensor([0, 0, 1, 1, 2]), 3)


def test_cpm_classification_is_mean_similarity_to_training_latents():
    ref = torch.tensor([[1.0], [2.0], [-1.0], [4.0]])
    labels = torch.tensor([0, 0, 1, 1])
    logits = class_mean_similarity(torch.tensor([[2.0], [-1.0]]), ref, labels, 3)
    expected = torch.tensor([[3.0, 3.0, -math.inf], [-1.5, -1.5, -math.inf]])
    assert torch.equal(logits, expected)


def trained_cpm(modalities, **options):
    torch.manual_seed(0)
    method = create_method("cpm_net", identity_encoders(modalities), n_classes=3, feature_dim=6,
                           latent_dim=8, test_epochs=6, **options)
    batch = feature_batch(modalities)
    before = snapshot(method)
    losses = [method.train_step(batch, optimizer=None) for _ in range(5)]
    return method, batch, before, losses


@pytest.mark.parametrize("modalities", [("audio", "video"), ("audio", "image", "text")])
def test_cpm_training_updates_networks_and_latents_without_reading_absent_views(modalities):
    method, batch, before, losses = trained_cpm(modalities)  # absent entries are NaN
    assert all(math.isfinite(x) for x in losses)
    after = snapshot(method)
    assert not torch.equal(after["train_latents/"], torch.empty(0, 8))
    for key in ("decoders.audio.weight/", "decoders.audio.bias/"):
        assert not torch.equal(before[key], after[key])
    assert torch.isfinite(after["train_latents/"]).all()


def test_cpm_test_time_optimisation_lowers_objective_and_changes_no_weight():
    modalities = ("audio", "image", "text")
    method, batch, _, _ = trained_cpm(modalities)
    test = feature_batch(modalities, n=10, seed=1)
    before = snapshot(method)
    method.eval()
    with torch.no_grad():  # as the scorer calls it
        out = method.predict(test)
    after = snapshot(method)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights, latents, Adam moments
    assert set(out) == {"multi", *modalities} and all(v.shape == (10, 3) for v in out.values())
    assert all(torch.isfinite(v).all() for v in out.values())
    # the objective the test latents minimise goes down
    views = method.views(test)
    init = torch.zeros(10, 8)
    _, trace = method.fit_test_latents(views, test["present"], init)
    assert len(trace) == 6 * 5 + 1  # test_epochs x test_steps Adam steps
    assert trace[-1] < trace[0] and all(b < a for a, b in zip(trace, trace[1:]))


def test_cpm_prediction_does_not_depend_on_the_batch():
    method, _, _, _ = trained_cpm(("audio", "video"))
    test = feature_batch(("audio", "video"), n=8, seed=2)
    with torch.no_grad():
        whole = method.predict(test)
        halves = [method.predict({k: v[s] for k, v in test.items()}) for s in (slice(0, 3), slice(3, 8))]
    for key in whole:
        assert torch.allclose(whole[key], torch.cat([h[key] for h in halves]), atol=1e-5)


def test_cpm_batches_of_part_of_the_split_grow_the_latents():
    method = create_method("cpm_net", identity_encoders(("audio", "video")), n_classes=3, feature_dim=6,
                           latent_dim=8, test_epochs=2)
    batch = feature_batch(("audio", "video"), n=12)
    first = {k: v[:6] for k, v in batch.items()}
    method.train_step(first, optimizer=None)
    assert method.train_latents.shape == (6, 8) and torch.equal(method.train_labels, batch["label"][:6])
    method.train_step({k: v[6:] for k, v in batch.items()}, optimizer=None)
    assert method.train_latents.shape == (12, 8) and torch.equal(method.train_labels, batch["label"])


def test_cpm_state_dict_round_trip_resizes_latents_and_keeps_adam_state():
    method, _, _, _ = trained_cpm(("audio", "video"))
    fresh = create_method("cpm_net", identity_encoders(("audio", "video")), n_classes=3, feature_dim=6,
                          latent_dim=8, test_epochs=6)
    fresh.load_state_dict(method.state_dict())
    a, b = snapshot(method), snapshot(fresh)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    test = feature_batch(("audio", "video"), n=5, seed=3)
    with torch.no_grad():
        assert torch.equal(method.predict(test)["multi"], fresh.predict(test)["multi"])


def test_cpm_rejects_bad_options():
    with pytest.raises(ValueError, match="method_options.cpm_net.test_epochs"):
        create_method("cpm_net", identity_encoders(("a", "b")), n_classes=2, feature_dim=4, test_epochs=0)
    with pytest.raises(ValueError, match="method_options.cpm_net.lamb"):
        create_method("cpm_net", identity_encoders(("a", "b")), n_classes=2, feature_dim=4, lamb=-1)


# --- TATE -------------------------------------------------------------------------------------------
P, A = True, False  # present, absent
# (present pattern) -> tag [complete, missing_1, missing_2, missing_3], as TATE's network.py L89-105
TAGS_2 = {(P, P): [1, 0, 0, 0], (A, P): [0, 1, 0, 0], (P, A): [0, 0, 1, 0], (A, A): [0, 1, 1, 0]}
TAGS_3 = {
    (P, P, P): [1, 0, 0, 0],
    (A, P, P): [0, 1, 0, 0], (P, A, P): [0, 0, 1, 0], (P, P, A): [0, 0, 0, 1],
    (A, A, P): [0, 1, 1, 0], (A, P, A): [0, 1, 0, 1], (P, A, A): [0, 0, 1, 1],
    (A, A, A): [0, 1, 1, 1],
}


@pytest.mark.parametrize("table", [TAGS_2, TAGS_3], ids=["two", "three"])
def test_tate_tag_of_every_missing_pattern(table):
    present = torch.tensor(list(table))
    tags = missing_tag(present)
    assert tags.tolist() == [[float(b) for b in t] for t in table.values()]
    assert len({tuple(t) for t in tags.tolist()}) == len(table)  # distinct


def test_tate_symmetric_kl_matches_torch_kl_div():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    p, q = F.softmax(a, -1), F.softmax(b, -1)
    expected = (F.kl_div(q.log(), p, reduction="none").sum(-1)   # KL(p || q)
                + F.kl_div(p.log(), q, reduction="none").sum(-1))  # KL(q || p)
    assert torch.allclose(symmetric_kl(a, b), expected, atol=1e-6)


def tate(modalities, **options):
    torch.manual_seed(0)
    return create_method("tate", identity_encoders(modalities), n_classes=3, feature_dim=6,
                         att_dim=8, **options)


@pytest.mark.parametrize("modalities", [("audio", "video"), ("audio", "image", "text")])
def test_tate_never_reads_an_absent_modality(modalities):
    method = tate(modalities).eval()
    nan_batch = feature_batch(modalities, fill=float("nan"))
    junk_batch = feature_batch(modalities, fill=1e6)
    with torch.no_grad():
        a, b = method.predict(nan_batch), method.predict(junk_batch)
    assert set(a) == {"multi", *modalities}
    for key in a:
        assert torch.isfinite(a[key]).all() and torch.equal(a[key], b[key])
    method.train()
    before = snapshot(method)
    loss = method.train_step(nan_batch, optimizer=None)
    assert math.isfinite(loss)
    after = snapshot(method)
    assert all(torch.isfinite(t).all() for t in after.values())
    assert not torch.equal(before["head.weight/"], after["head.weight/"])


def test_tate_reconstruction_and_tag_losses_count_present_tokens_only():
    modalities = ("audio", "image", "text")
    method = tate(modalities).eval()
    batch = feature_batch(modalities, n=6)
    present = batch["present"]
    with torch.no_grad():
        parts = method.forward_parts(batch, present)
        terms = method.losses(parts, batch["label"], present)
    # independent: KL both ways per token with torch's kl_div, averaged over present tokens, summed
    p, q = F.softmax(parts["decoded"], -1), F.softmax(parts["joint"], -1)
    kl = F.kl_div(q.log(), p, reduction="none").sum(-1) + F.kl_div(p.log(), q, reduction="none").sum(-1)
    expected = sum(kl[i][present[i]].mean() for i in range(6))
    assert torch.allclose(terms["de"], expected, atol=1e-5)
    tag = missing_tag(present)
    expected_tag = (tag - torch.sigmoid(parts["pooled"][:, -4:])).abs().mean()
    assert torch.allclose(terms["tag"], expected_tag)
    ce = F.cross_entropy(parts["logits"], batch["label"], reduction="sum")
    l2 = 1e-4 * (method.head.weight.pow(2).sum() + method.head.bias.pow(2).sum()) / 2
    total = ce + 0.1 * l2 + 0.1 * expected + 0.1 * expected_tag
    assert torch.allclose(terms["total"], total, atol=1e-5)


def test_tate_tokens_carry_the_tag_and_pairwise_projections():
    modalities = ("audio", "image", "text")
    method = tate(modalities).eval()
    batch = feature_batch(modalities, n=4)
    with torch.no_grad():
        joint = method.joint_tokens(batch, batch["present"])
    assert joint.shape == (4, 3, 8 + 4)
    assert torch.equal(joint[:, :, -4:], missing_tag(batch["present"]).unsqueeze(1).expand(-1, 3, -1))
    # pairs (0,1), (0,2), (1,2) share one d x d/2 matrix each; a token concatenates its two shares
    assert [tuple(p.shape) for p in method.pair_maps] == [(8, 4)] * 3
    two = tate(("audio", "video"))
    assert [tuple(p.shape) for p in two.pair_maps] == [(8, 8)]


def test_tate_unimodal_prediction_counts_only_that_modality_and_state_round_trips():
    modalities = ("audio", "image", "text")
    method = tate(modalities)
    batch = feature_batch(modalities, n=8)
    method.train_step(batch, optimizer=None)
    method.eval()
    with torch.no_grad():
        out = method.predict(batch)
        alone = torch.zeros_like(batch["present"])
        alone[:, 1] = batch["present"][:, 1]
        assert torch.equal(out["image"], method.forward_parts(batch, alone)["logits"])
    fresh = tate(modalities)
    fresh.load_state_dict(method.state_dict())  # weights and Adam moments
    a, b = snapshot(method), snapshot(fresh)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(k.startswith("_extra_state/adam/state") for k in a)


def test_tate_rejects_widths_the_heads_cannot_split():
    with pytest.raises(ValueError, match="method_options.tate.att_dim"):
        create_method("tate", identity_encoders(("a", "b", "c")), n_classes=2, feature_dim=4, att_dim=7)
