"""Details of cca, dcca, dccae and tate that the method-level tests do not pin down: which pairs and
rows enter DCCA's objective at its limits, the options that reach the computations, the batch order,
the per-modality predictions, and TATE's block, pooling and loss terms against an independent
re-computation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from mla.batches import shuffled_batches, to_tensors
from mla.frozen import identity_encoders
from mla.methods.base import create_method
import mla.methods.mmin
from mla.methods.autoencoders import cmd, masked_mse, simulated_keep
from mla.methods.cca_parts import total_correlation
from mla.methods.cpm_net import per_sample_uniform, reconstruction_loss, structured_loss, xavier_bound
from mla.methods.mmin import invariant_encoder
from mla.methods.tate import TAG_BITS, missing_tag, symmetric_kl
from tiny import one_thread  # noqa: F401  (fixture)

MODS3 = ("audio", "image", "text")


def dcca(mods=MODS3, **options):
    torch.manual_seed(0)
    opts = {"hidden": 8, "n_components": 2, **options}
    return create_method("dcca", identity_encoders(mods), n_classes=3, feature_dim=6, **opts)


def feature_batch(mods, present: np.ndarray, seed=0):
    rng = np.random.default_rng(seed)
    n = len(present)
    x = {m: torch.tensor(rng.normal(size=(n, 6)), dtype=torch.float32) for m in mods}
    return {**x, "present": torch.tensor(present), "label": torch.tensor(np.arange(n) % 3), "index": torch.arange(n)}


def test_dcca_pairs_enter_only_with_n_components_plus_one_rows_and_eps_is_the_option():
    """Pairs (0,1): 3 = k + 1 rows with both (counted); (0,2): 2 = k rows (skipped); (1,2): 5 rows
    (counted, after a skipped pair). ``outs`` are arbitrary outputs: the objective is the sum of the
    counted pairs' total correlations over their shared rows, with the method's eps."""
    n = 12
    present = np.zeros((n, 3), bool)
    present[:3, [0, 1]] = True            # rows 0-2: audio + image
    present[3:5, [0, 2]] = True           # rows 3-4: audio + text
    present[5:10, [1, 2]] = True          # rows 5-9: image + text
    present[10:, 0] = True
    model = dcca(eps=0.3)
    batch = feature_batch(MODS3, present)
    g = torch.Generator().manual_seed(1)
    outs = {}
    for i in range(3):
        rows = torch.nonzero(batch["present"][:, i]).flatten()
        outs[i] = (torch.randn(len(rows), 2, generator=g, dtype=torch.float64), rows)

    def shared(a, b):
        both = present[:, a] & present[:, b]
        pick = lambda i: outs[i][0][[list(outs[i][1]).index(r) for r in np.flatnonzero(both)]]  # noqa: E731
        return pick(a), pick(b)

    want = sum(total_correlation(*shared(a, b), 2, 1e-3, 1e-3, 0.3) for a, b in [(0, 1), (1, 2)])
    got = model.correlation_loss(batch, outs)
    assert float(got) == pytest.approx(-float(want), rel=1e-12)
    assert float(want) != pytest.approx(float(sum(total_correlation(*shared(a, b), 2, 1e-3, 1e-3)
                                                  for a, b in [(0, 1), (1, 2)])), rel=1e-6)  # eps matters here
    # a modality left out of ``outs`` (too few rows) drops its pairs, and only those
    only = {1: outs[1], 2: outs[2]}
    assert float(model.correlation_loss(batch, only)) == pytest.approx(-float(total_correlation(
        *shared(1, 2), 2, 1e-3, 1e-3, 0.3)), rel=1e-12)
    assert model.correlation_loss(batch, {0: outs[0]}) is None


def test_dcca_outputs_need_two_present_rows():
    present = np.zeros((6, 2), bool)
    present[:, 0] = True
    present[:2, 1] = True   # exactly two rows: BatchNorm can run
    model = dcca(("audio", "text"))
    batch = feature_batch(("audio", "text"), present)
    outs = model.outputs(batch)
    assert sorted(outs) == [0, 1] and outs[1][1].tolist() == [0, 1] and outs[1][0].shape == (2, 2)
    batch["present"][1, 1] = False
    assert sorted(model.outputs(batch)) == [0]


def test_dcca_counts_every_batch_without_a_pair():
    model = dcca(("audio", "text"))
    present = np.zeros((8, 2), bool)
    present[:4, 0] = present[4:, 1] = True
    batch = feature_batch(("audio", "text"), present)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train_step(batch, opt)
    model.train_step(batch, opt)
    assert model.epoch_diagnostics() == {"batches_without_pair": 2}


def test_dccae_step_takes_correlation_and_reconstruction_together():
    torch.manual_seed(0)
    mods = ("audio", "text")
    model = create_method("dccae", identity_encoders(mods), n_classes=3, feature_dim=6, hidden=5, n_components=2,
                          recon_weight=0.5)
    present = np.ones((16, 2), bool)
    present[::3, 1] = False
    batch = feature_batch(mods, present)
    with torch.no_grad():  # train mode, as the step: BatchNorm on the batch, deterministic
        outs = model.outputs(batch)
        want = float(model.correlation_loss(batch, outs) + model.extra_loss(batch, outs))
    assert model.train_step(batch, torch.optim.SGD(model.parameters(), lr=0.0)) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("name", ["cca", "dcca"])
def test_batch_order_follows_the_loops_generator(name):
    """The epoch's batches are ``shuffled_batches`` with the loop's generator, not the global RNG."""
    mods = ("audio", "text")
    rng = np.random.default_rng(2)
    present = rng.random((40, 2)) > 0.2
    present[~present.any(1), 0] = True
    data = to_tensors({m: rng.normal(size=(40, 6)).astype(np.float32) for m in mods}, np.arange(40) % 3, mods,
                      present)
    torch.manual_seed(0)
    model = create_method(name, identity_encoders(mods), n_classes=3, feature_dim=6, n_components=2,
                          **({"hidden": 8} if name == "dcca" else {}))
    torch.manual_seed(123)
    got = [b["index"].tolist() for b in model.epoch_batches(data, 16, torch.Generator().manual_seed(7))]
    torch.manual_seed(999)
    want = [b["index"].tolist() for b in shuffled_batches(data, 16, torch.Generator().manual_seed(7))]
    assert got == want


def test_dcca_fills_training_means_once_and_predicts_each_modality_alone():
    mods = ("audio", "text")
    rng = np.random.default_rng(3)
    present = rng.random((60, 2)) > 0.3
    present[~present.any(1), 0] = True
    arrays = {m: rng.normal(size=(60, 6)).astype(np.float32) + np.arange(60)[:, None] % 3 for m in mods}
    data = to_tensors(arrays, np.arange(60) % 3, mods, present)
    model = dcca(mods)
    list(model.epoch_batches(data, 20, torch.Generator().manual_seed(0)))
    for i, m in enumerate(mods):
        torch.testing.assert_close(model.mean[i], torch.tensor(arrays[m][present[:, i]].mean(0)).float())
    model.eval()
    batch = data.batch(torch.arange(60))
    out = model.predict(batch)
    for i, m in enumerate(mods):
        alone = {**batch, "present": batch["present"] & torch.tensor([j == i for j in range(2)])}
        torch.testing.assert_close(out[m], model.predict(alone)["multi"])
    assert not torch.allclose(out["audio"], out["text"])


def test_cca_step_reports_the_svms_squared_hinge_and_diagnostics_round_to_six_places():
    mods = ("audio", "text")
    rng = np.random.default_rng(4)
    labels = np.arange(60) % 3
    arrays = {m: (rng.normal(size=(60, 6)) + labels[:, None]).astype(np.float32) for m in mods}
    data = to_tensors(arrays, labels, mods, np.ones((60, 2), bool))
    model = create_method("cca", identity_encoders(mods), n_classes=3, feature_dim=6, n_components=2)
    list(model.epoch_batches(data, 20, torch.Generator().manual_seed(0)))
    batch = data.batch(torch.arange(60))
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    want = float(model.svm.squared_hinge(model.components(batch), batch["label"]))
    assert model.train_step(batch, opt) == want and want > 0
    diag = model.epoch_diagnostics()
    assert diag["canonical_correlations"] == {"audio-text": [round(float(c), 6) for c in model.corr[0]]}
    assert all(len(str(c).split(".")[1]) <= 6 for c in diag["canonical_correlations"]["audio-text"])


# --- TATE ---------------------------------------------------------------------------------------
def reference_block(blk, x):
    """The code's block, re-computed: heads of scaled dot-product attention, residual + LayerNorm(eps
    1e-8), ReLU feed-forward, residual + LayerNorm(eps 1e-8)."""
    b, n, d = x.shape
    h = blk.heads
    q, k, v = (x @ lin.weight.T for lin in (blk.q, blk.k, blk.v))
    heads = []
    for j in range(h):
        sl = slice(j * d // h, (j + 1) * d // h)
        w = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(d // h), -1)
        heads.append(w @ v[..., sl])
    x = F.layer_norm(x + torch.cat(heads, -1), (d,), blk.ln1.weight, blk.ln1.bias, 1e-8)
    f1, f2 = blk.ff[0], blk.ff[-1]
    return F.layer_norm(x + torch.relu(x @ f1.weight.T + f1.bias) @ f2.weight.T + f2.bias, (d,),
                        blk.ln2.weight, blk.ln2.bias, 1e-8)


def tate(mods=MODS3, **options):
    torch.manual_seed(0)
    return create_method("tate", identity_encoders(mods), n_classes=3, feature_dim=6,
                         **{"att_dim": 8, "heads": 2, **options})


def test_tate_block_and_pool_against_a_recomputation():
    model = tate(dropout=0.0)
    model.eval()
    blk = model.encoder
    assert blk.q.bias is None and blk.k.bias is None and blk.v.bias is None
    assert blk.ln1.eps == blk.ln2.eps == 1e-8
    with torch.no_grad():
        for p in blk.ff.parameters():
            p.normal_()  # biases too, so the ReLU's cut shows
        x = 1e-3 * torch.randn(2, 3, blk.q.in_features, generator=torch.Generator().manual_seed(0))  # LN eps shows
        torch.testing.assert_close(blk(x), reference_block(blk, x), rtol=1e-5, atol=1e-6)
        z = torch.randn(2, 3, model.pool_u.shape[0], generator=torch.Generator().manual_seed(1))
        scores = ((z @ model.pool_u) * torch.sigmoid(z @ model.pool_m)) @ model.pool_r
        w = torch.softmax(scores, dim=1)
        torch.testing.assert_close(model.pool(z), (w * z).sum(1))
    with pytest.raises(ValueError, match=r"^method tate: width 8 is not divisible by heads=3 \(set "
                                         r"method_options.tate.att_dim or heads\)$"):
        tate(heads=3)


def test_tate_loss_terms_by_hand():
    """ce (summed), l2 = l2_scale · (‖W‖² + ‖b‖²) / 2 of the head, de = Σ over samples of the mean
    symmetric KL over present modalities (a sample with none present adds nothing), tag = mean |tag −
    σ(pooled tail)|, total with each weight."""
    model = tate(l2_scale=0.3, l2_weight=0.7, de_weight=0.11, tag_weight=0.13)
    with torch.no_grad():
        model.head.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
    g = torch.Generator().manual_seed(2)
    b, m, d = 4, 3, model.encoder.q.in_features
    parts = {"logits": torch.randn(b, 3, generator=g), "decoded": torch.randn(b, m, d, generator=g),
             "joint": torch.randn(b, m, d, generator=g), "pooled": torch.randn(b, d, generator=g)}
    labels = torch.tensor([0, 2, 1, 1])
    present = torch.tensor([[1, 1, 0], [0, 0, 1], [1, 1, 1], [0, 0, 0]], dtype=torch.bool)
    got = model.losses(parts, labels, present)
    ce = F.cross_entropy(parts["logits"], labels, reduction="sum")
    l2 = 0.3 * (model.head.weight.pow(2).sum() + model.head.bias.pow(2).sum()) / 2
    kl = symmetric_kl(parts["decoded"], parts["joint"])
    de = sum(kl[i][present[i]].mean() for i in range(3))  # the last sample has no modality
    tag = (missing_tag(present) - torch.sigmoid(parts["pooled"][:, -TAG_BITS:])).abs().mean()
    for key, want in {"ce": ce, "l2": l2, "de": de, "tag": tag,
                      "total": ce + 0.7 * l2 + 0.11 * de + 0.13 * tag}.items():
        torch.testing.assert_close(got[key], want, msg=key)
    assert set(got) == {"total", "ce", "l2", "de", "tag"}


def test_tate_forward_parts_and_its_optimisers_rate():
    model = tate(lr=0.0123)
    model.eval()  # no dropout: the decoder run twice gives the same output
    present = torch.tensor([[1, 0, 1], [1, 1, 1]], dtype=torch.bool)
    batch = feature_batch(MODS3, present.numpy())
    parts = model.forward_parts(batch, present)
    assert set(parts) == {"joint", "encoded", "decoded", "pooled", "logits"}
    torch.testing.assert_close(parts["decoded"], model.decoder(parts["encoded"]))
    assert model.optimiser().param_groups[0]["lr"] == 0.0123


def test_tate_block_trains_without_dropout_at_rate_zero_and_layers_have_the_codes_biases():
    model = tate(dropout=0.0)
    model.train()
    blk = model.encoder
    x = torch.randn(2, 3, blk.q.in_features, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(blk(x), reference_block(blk, x), rtol=1e-5, atol=1e-6)
    assert all(model.project[k].bias is None for k in MODS3) and model.hidden.bias is None
    assert model.head.bias is not None


def test_tate_tag_width_and_att_dim_limits():
    assert missing_tag(torch.ones(2, TAG_BITS - 1, dtype=torch.bool)).shape == (2, TAG_BITS)
    with pytest.raises(ValueError, match=rf"^method tate: the tag encodes at most {TAG_BITS - 1} modalities, "
                                         rf"got {TAG_BITS}$"):
        missing_tag(torch.ones(2, TAG_BITS, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"^method tate: att_dim 9 must be divisible by 2 \(one share per partner "
                                         r"modality; set method_options.tate.att_dim\)$"):
        tate(att_dim=9, heads=1)


def test_cpm_loads_a_partial_state_without_latents():
    """``load_state_dict(strict=False)`` of the networks alone keeps the latents as they are."""
    torch.manual_seed(0)
    mods = ("audio", "text")
    a = create_method("cpm_net", identity_encoders(mods), n_classes=3, feature_dim=6, latent_dim=4)
    b = create_method("cpm_net", identity_encoders(mods), n_classes=3, feature_dim=6, latent_dim=4)
    nets = {k: v for k, v in a.state_dict().items() if k.startswith("decoders.")}
    latents = b.train_latents.detach().clone()
    result = b.load_state_dict(nets, strict=False)
    assert "train_latents" in result.missing_keys and torch.equal(b.train_latents, latents)
    assert all(torch.equal(b.state_dict()[k], v) for k, v in nets.items())


def test_if_mmin_teacher_loss_counts_a_pair_from_two_shared_rows_at_the_cmd_order():
    """CE + the mean over pairs of CMD(invariant features of the rows with both modalities, order
    ``cmd_order``); a pair needs two such rows."""
    torch.manual_seed(0)
    mods = ("audio", "text")
    model = create_method("if_mmin", identity_encoders(mods), n_classes=3, feature_dim=6, embed_dim=4,
                          cls_layers=[8], ae_layers=[8, 4], cmd_order=3, dropout=0.0)
    model.eval()
    g = torch.Generator().manual_seed(1)
    feats = {m: torch.randn(6, 6, generator=g) for m in mods}
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    present = torch.ones(6, 2, dtype=torch.bool)
    present[2:, 1] = False   # rows 0 and 1 have both: exactly two
    with torch.no_grad():
        t = model.teacher
        emb = {m: t.utt[m](feats[m]) for m in mods}
        inv = {m: t.shared(emb[m]) for m in mods}
        ce = F.cross_entropy(t.classifier(torch.cat([emb["audio"], emb["text"], inv["audio"], inv["text"]], 1)),
                             labels)
        rows = present[:, 0] & present[:, 1]
        want = ce + cmd(inv["audio"][rows], inv["text"][rows], 3)
        got = model.teacher_loss(feats, {"present": present, "label": labels})
        torch.testing.assert_close(got, want)
        assert float(got - ce) > 0.01
        # every row with both, features spread out: the order shows (order 3 against the default 5)
        big = {m: 30 * f for m, f in feats.items()}
        emb = {m: t.utt[m](big[m]) for m in mods}
        inv = {m: t.shared(emb[m]) for m in mods}
        full = torch.ones(6, 2, dtype=torch.bool)
        ce_big = F.cross_entropy(t.classifier(torch.cat([emb["audio"], emb["text"], inv["audio"], inv["text"]], 1)),
                                 labels)
        three, five = cmd(inv["audio"], inv["text"], 3), cmd(inv["audio"], inv["text"], 5)
        assert abs(float(three - five)) > 1e-3 * float(three)
        torch.testing.assert_close(model.teacher_loss(big, {"present": full, "label": labels}), ce_big + three)
        present[1, 1] = False  # one row with both: no CMD term
        torch.testing.assert_close(model.teacher_loss(feats, {"present": present, "label": labels}), ce)


def test_invariant_encoder_is_the_codes_two_leaky_layers():
    enc = invariant_encoder(5)
    assert [type(m).__name__ for m in enc] == ["Linear", "LeakyReLU", "Linear", "LeakyReLU"]
    assert (enc[0].in_features, enc[0].out_features, enc[2].in_features, enc[2].out_features) == (5, 5, 5, 5)


def test_dcca_mean_flag_is_boolean():
    assert dcca().mean_ready.dtype == torch.bool


# --- MMIN, IF-MMIN, CPM-Net: what pretraining and latents are built from ---------------------------------
def frozen_split(mods, n=30, seed=5, drop=0.3):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    present = rng.random((n, len(mods))) > drop
    present[~present.any(1), 0] = True
    present[:6] = True  # some complete samples for the teacher
    arrays = {m: (rng.normal(size=(n, 6)) + labels[:, None]).astype(np.float32) for m in mods}
    return to_tensors(arrays, labels, mods, present)


def mmin(name="mmin", **options):
    torch.manual_seed(0)
    opts = {"embed_dim": 4, "cls_layers": [8], "ae_layers": [8, 4], "n_blocks": 2, "dropout": 0.0,
            "pretrain_dropout": 0.0, "pretrain_epochs": [1, 1], "pretrain_batch_size": 4, **options}
    return create_method(name, identity_encoders(("audio", "text")), n_classes=3, feature_dim=6, **opts)


@pytest.mark.parametrize("name", ["mmin", "if_mmin"])
def test_mmin_pretrains_on_complete_rows_in_training_mode_with_its_own_rate_and_clip_groups(name, monkeypatch):
    model = mmin(name, pretrain_lr=3.5e-4)
    data = frozen_split(("audio", "text"))
    seen, groups, rates = [], [], []
    real_loss, real_clip, real_adam = model.teacher_loss, mla.methods.mmin.clip_and_step, torch.optim.Adam

    def loss(feats, batch):
        seen.append((bool(batch["present"].all()), model.teacher.training, len(batch["label"])))
        return real_loss(feats, batch)

    def clip(loss_, opt, groups_, norm):
        groups.append(list(groups_))
        return real_clip(loss_, opt, groups_, norm)

    class Adam(real_adam):
        def __init__(self, params, **kw):
            rates.append(kw)
            super().__init__(params, **kw)

    monkeypatch.setattr(model, "teacher_loss", loss)
    monkeypatch.setattr(mla.methods.mmin, "clip_and_step", clip)
    monkeypatch.setattr(torch.optim, "Adam", Adam)
    model.eval()
    model.train()
    assert model.training and not model.teacher.training  # train() defaults to training mode
    assert int(model.pretrain_samples) == 0 and model.pretrain_samples.dtype == torch.int64
    model.epoch_batches(data, 8, torch.Generator().manual_seed(0))
    complete = int(data.present.all(1).sum())
    assert seen and all(ok and training for ok, training, _ in seen)
    assert sum(n for *_, n in seen) == 2 * complete and int(model.pretrain_samples) == complete
    assert rates[0]["lr"] == 3.5e-4
    want = [*model.teacher.utt.values(), model.teacher.classifier] + ([model.teacher.shared] if name == "if_mmin" else [])
    assert all(g == want for g in groups)
    assert not model.teacher.training


@pytest.mark.parametrize("name", ["mmin", "cpm_net"])
def test_first_epoch_draws_from_the_loops_generator_only(name):
    """Pretraining's batch order (MMIN) and the latents' initial draw (CPM-Net) come from the loop's
    generator: the global RNG's state changes nothing."""
    data = frozen_split(("audio", "text"))
    states = []
    for global_seed in (1, 2):
        torch.manual_seed(0)  # the same initial weights
        model = mmin() if name == "mmin" else create_method("cpm_net", identity_encoders(("audio", "text")),
                                                                  n_classes=3, feature_dim=6, latent_dim=4)
        torch.manual_seed(global_seed)
        batches = [b["index"].tolist() for b in model.epoch_batches(data, 8, torch.Generator().manual_seed(3))]
        states.append(({k: v.clone() for k, v in model.state_dict().items() if torch.is_tensor(v)}, batches))
    (a, order_a), (b, order_b) = states
    assert order_a == order_b and a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cpm_latent_draws_bounds_and_sizes():
    rows = per_sample_uniform(torch.tensor([3, 7, 3]), 500, 0.25)
    assert rows.shape == (3, 500) and torch.equal(rows[0], rows[2]) and not torch.equal(rows[0], rows[1])
    assert rows.min() >= -0.25 and rows.max() <= 0.25 and rows.min() < -0.2 and rows.max() > 0.2
    assert per_sample_uniform(torch.tensor([], dtype=torch.long), 5, 0.25).shape == (0, 5)
    model = create_method("cpm_net", identity_encoders(("audio", "text")), n_classes=3, feature_dim=6, latent_dim=4)
    model.size_latents(torch.arange(10) % 3, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"^method cpm_net: latents were sized for 10 training samples, got a "
                                         r"training split of 12$"):
        model.size_latents(torch.arange(12) % 3)


def test_cpm_test_time_optimiser_uses_lr_test(monkeypatch):
    rates, real_adam = [], torch.optim.Adam

    class Adam(real_adam):
        def __init__(self, params, **kw):
            rates.append(kw.get("lr"))
            super().__init__(params, **kw)

    model = create_method("cpm_net", identity_encoders(("audio", "text")), n_classes=3, feature_dim=6, latent_dim=4,
                          lr_test=0.0375, test_epochs=2)
    data = frozen_split(("audio", "text"))
    model.epoch_batches(data, 8, torch.Generator().manual_seed(0))
    monkeypatch.setattr(torch.optim, "Adam", Adam)
    model.eval()
    model.predict(data.batch(torch.arange(5)))
    assert 0.0375 in rates


def test_masked_mse_divides_by_the_known_entries_and_keep_rules_are_named():
    pred, target = torch.tensor([[1.0, 5.0], [2.0, 7.0]]), torch.tensor([[4.0, 0.0], [0.0, 0.0]])
    known = torch.tensor([[True, False], [False, False]])
    assert float(masked_mse(pred, target, known)) == 9.0  # one known entry: (1 - 4)^2 / 1
    assert float(masked_mse(pred, target, torch.zeros(2, 2, dtype=torch.bool))) == 0.0
    with pytest.raises(ValueError, match=r"^simulated missingness 'some': expected one of proper, any "
                                         r"\(option train_keep\)$"):
        simulated_keep(torch.ones(2, 2, dtype=torch.bool), "some")


def test_mmin_without_complete_samples_names_its_modalities():
    model = mmin()
    data = frozen_split(("audio", "text"))
    data.present[:, 1] = ~data.present[:, 0]
    with pytest.raises(ValueError, match=r"^method mmin: no training sample has every modality \(audio, text\), so "):
        model.pretrain_rows(data)


def test_cpm_latent_step_minimises_reconstruction_plus_lamb_times_the_batchs_structured_loss():
    """The latents' objective (Algorithm 1): l_r of the batch + lamb · l_c summed over the batch's
    rows (class means over every training latent). A latent rate of 1e-12 leaves the latents where
    the loss was taken, so it can be re-computed after the step."""
    torch.manual_seed(0)
    mods = ("audio", "text")
    model = create_method("cpm_net", identity_encoders(mods), n_classes=3, feature_dim=6, latent_dim=4, lamb=2.5,
                          latent_steps=1, lr_latent=1e-12)
    data = frozen_split(mods, n=24)
    model.size_latents(data.labels, torch.Generator().manual_seed(0))
    batch = data.batch(torch.tensor([2, 5, 7, 11, 13, 17]))
    got = model.train_step(batch, optimizer=None)
    with torch.no_grad():
        views = model.views(batch)
        recon = reconstruction_loss(model.decode(model.train_latents[batch["index"]]), views, batch["present"])
        structured = structured_loss(model.train_latents, model.train_labels, 3, rows=batch["index"])
        everyone = structured_loss(model.train_latents, model.train_labels, 3)
    assert got == pytest.approx(float(recon + 2.5 * structured), rel=1e-5)
    assert float(structured) != pytest.approx(float(everyone), rel=1e-3)  # the batch's rows, not every row


def test_cpm_predicts_each_modality_from_it_alone_and_refuses_before_training():
    torch.manual_seed(0)
    mods = ("audio", "image", "text")
    model = create_method("cpm_net", identity_encoders(mods), n_classes=3, feature_dim=6, latent_dim=4, test_epochs=3)
    with pytest.raises(RuntimeError, match=r"^method cpm_net: predict before training \(no training latents\)$"):
        model.predict(frozen_split(mods).batch(torch.arange(3)))
    data = frozen_split(mods)
    for batch in model.epoch_batches(data, 8, torch.Generator().manual_seed(0)):
        model.train_step(batch, optimizer=None)
    model.eval()
    batch = data.batch(torch.arange(6))  # complete samples
    out = model.predict(batch)
    for i, m in enumerate(mods):
        alone = {**batch, "present": batch["present"] & torch.tensor([j == i for j in range(3)])}
        torch.testing.assert_close(out[m], model.predict(alone)["multi"], msg=m)
    assert not torch.allclose(out["audio"], out["text"])


def test_cpm_initialisation_bounds_labels_and_rates():
    """The code's xavier_init: U(±sqrt(6 / (fan_in + fan_out))) for the decoders (k -> s) and the
    latents (n, k); new latents' labels are unknown (-1); each Adam has its own rate."""
    assert xavier_bound(10, 5) == pytest.approx(math.sqrt(6 / 15), rel=1e-15)
    torch.manual_seed(0)
    model = create_method("cpm_net", identity_encoders(("audio", "text")), n_classes=3, feature_dim=60,
                          latent_dim=40, lr_net=0.0021, lr_latent=0.034)
    assert model.train_latents.shape == (0, 40)
    b = math.sqrt(6 / 100)
    w = model.decoders["audio"].weight.detach()
    assert w.shape == (60, 40) and float(w.abs().max()) <= b and float(w.min()) < -0.9 * b and float(w.max()) > 0.9 * b
    model.grow_latents(200, torch.Generator().manual_seed(0))
    lat, bl = model.train_latents.detach(), math.sqrt(6 / 240)
    assert float(lat.abs().max()) <= bl and float(lat.min()) < -0.9 * bl and float(lat.max()) > 0.9 * bl
    assert (model.train_labels == -1).all() and len(model.train_labels) == 200
    model.grow_latents(200)  # the same size: nothing drawn
    assert torch.equal(model.train_latents.detach(), lat)
    net, latent = model.optimisers()
    assert net.param_groups[0]["lr"] == 0.0021 and latent.param_groups[0]["lr"] == 0.034


def test_cpm_keeps_its_adam_moments_across_steps_and_names_a_lonely_class():
    """Each step re-checks the latents' size; the same size keeps the optimisers (and their
    moments): after two steps each Adam has counted every step."""
    torch.manual_seed(0)
    mods = ("audio", "text")
    model = create_method("cpm_net", identity_encoders(mods), n_classes=3, feature_dim=6, latent_dim=4,
                          net_steps=2, latent_steps=3)
    data = frozen_split(mods, n=24)
    for _ in range(2):
        for batch in model.epoch_batches(data, 8, torch.Generator().manual_seed(0)):
            model.train_step(batch, optimizer=None)
    net, latent = model.optimisers()
    assert [int(s["step"]) for s in net.state.values()] == [4] * len(net.state)
    assert [int(s["step"]) for s in latent.state.values()] == [6]
    with pytest.raises(ValueError, match=r"^method cpm_net: class\(es\) \[2\] have a single training sample; the "
                                         r"structured loss compares each sample with the other samples of its class"):
        structured_loss(torch.randn(5, 3), torch.tensor([0, 0, 1, 1, 2]), 3)
