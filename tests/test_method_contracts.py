"""Contracts every registered method keeps with missing modalities: which samples each encoder
trains on, what its forward sees for an absent modality, and that an absent entry's stored values
never reach a loss, a parameter or a prediction (issue 10). The registry is iterated: a new method
must declare its data flow in ``ABSENT`` below or ``test_every_method_declares_its_data_flow`` fails.

Also: the presence masks (``mla.missing``), scoring (``mla.evaluate``) and best-epoch selection
(``mla.train.Selection``) against hand-computed values.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mla.batches import to_tensors
from mla.evaluate import accuracies, split_metrics
from mla import catalog
from mla.methods import METHODS, create_method
from mla.missing import draw_mask, independent_mask, released_mask
from mla.train import Selection

from tiny import one_thread  # noqa: F401  (one torch thread: these are many tiny steps)

# Methods that train end to end on the stored inputs. The missing-modality baselines that train on
# frozen unimodal features have their own registry-driven contract (absent entries never read, NaN
# never reaching a loss or logit): tests/test_missing_baselines.py.
END_TO_END = sorted(n for n in METHODS.names() if not catalog.method_info(n).frozen_features)

# What each method does with an absent (sample, modality) entry.
# train: "skipped" = that modality's encoder never sees the sample in training (its loss uses exactly
#        the present rows, the paper's D_m); "zeroed" = the encoder sees an all-zero input for it, as
#        the released code feeds masked inputs.
# fused: "present" = the fused prediction uses only the present modalities' logits; "all" = every
#        modality's (the zeroed ones included) enters the fusion.
ABSENT = {
    "mla": ("skipped", "present"),
    "unimodal": ("skipped", "present"),
    "late_fusion": ("skipped", "present"),
    "mla_released": ("zeroed", "all"),
    "concat": ("zeroed", "all"),
    "sum": ("zeroed", "all"),
    "film": ("zeroed", "all"),
    "bigated": ("zeroed", "all"),
    "ogm_ge": ("zeroed", "all"),
    "qmf": ("zeroed", "all"),
}
# Options that make a method act on these linear encoders (OGM-GE's default modulates conv kernels only).
OPTIONS = {"ogm_ge": {"modulated_params": "matrices"}}
D_IN, S, N_CLASSES, N = 3, 4, 3, 14


class Recorder(nn.Module):
    """A linear encoder that keeps a copy of every input row it is given, in train or eval mode."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.lin = nn.Linear(D_IN, S)
        self.seen: dict[bool, list[torch.Tensor]] = {True: [], False: []}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen[self.training].append(x.detach().clone())
        return torch.tanh(self.lin(x))


def mods_for(name: str) -> tuple[str, ...]:
    counts = METHODS.get(name).modality_counts
    return ("audio", "image", "text")[: 3 if 3 in counts else counts[0]]


def mask_for(n_mods: int) -> np.ndarray:
    """Every pattern of presence, each sample keeping at least one modality (a single modality, as
    a unimodal run sees its column of the mask, loses some samples); sample 13 keeps all."""
    rs = np.random.RandomState(3)
    present = rs.random_sample((N, n_mods)) < 0.6
    if n_mods > 1:
        present[~present.any(1), rs.randint(0, n_mods)] = True
    present[N - 1] = True
    if n_mods > 1:
        present[0] = [True] + [False] * (n_mods - 1)  # only the first modality
        present[1] = [False] * (n_mods - 1) + [True]  # only the last one
    return present


def arrays_for(mods, present, absent_value: float) -> dict[str, np.ndarray]:
    """Row i of a present entry starts with i + 1 (so a recorded row names its sample); absent
    entries hold ``absent_value`` everywhere."""
    rs = np.random.RandomState(7)
    out = {}
    for k, m in enumerate(mods):
        a = rs.uniform(-1, 1, (N, D_IN)).astype(np.float32)
        a[:, 0] = np.arange(1, N + 1)
        a[~present[:, k]] = absent_value
        out[m] = a
    return out


def build(name: str, mods):
    enc = nn.ModuleDict({m: Recorder(10 + k) for k, m in enumerate(mods)})
    torch.manual_seed(0)
    return create_method(name, enc, n_classes=N_CLASSES, feature_dim=S, **OPTIONS.get(name, {}))


def train_epochs(name: str, absent_value: float, epochs: int = 2, batch_size: int = 4):
    """Train ``name`` for ``epochs`` on the fixed mask; returns (method, data, present, losses)."""
    mods = mods_for(name)
    present = mask_for(len(mods))
    labels = np.arange(N) % N_CLASSES
    data = to_tensors(arrays_for(mods, present, absent_value), labels, mods, present)
    method = build(name, mods)
    opt = torch.optim.SGD(method.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(5)
    torch.manual_seed(1)  # OGM-GE's noise comes from the global generator
    losses = []
    for _ in range(epochs):
        method.train()
        for batch in method.epoch_batches(data, batch_size, gen):
            losses.append(method.train_step(batch, opt))
    return method, data, present, losses


def test_every_method_declares_its_data_flow():
    assert set(ABSENT) == set(END_TO_END), (
        "declare the missing-modality data flow of every registered method in ABSENT "
        f"(missing: {sorted(set(END_TO_END) - set(ABSENT))}, stale: {sorted(set(ABSENT) - set(END_TO_END))})")


@pytest.mark.parametrize("name", END_TO_END)
def test_training_sees_exactly_the_declared_samples(name):
    """Per encoder, the rows it trains on: the present samples only ("skipped"), or every sample of
    every batch with an exact zero row for an absent one ("zeroed"); never an absent entry's values."""
    method, data, present, _ = train_epochs(name, absent_value=1e3, epochs=1)
    train, _ = ABSENT[name]
    for k, m in enumerate(method.modalities):
        rows = torch.cat(method.encoders[m].seen[True])
        assert not (rows == 1e3).any(), f"{name}: an absent {m} entry's stored values reached the encoder"
        zero = (rows == 0).all(1)
        ids = rows[~zero, 0].round().long() - 1
        want = set(np.flatnonzero(present[:, k]).tolist())
        assert set(ids.tolist()) == want, f"{name}: {m} trained on samples {sorted(set(ids.tolist()))}, want {sorted(want)}"
        if train == "skipped":
            assert not zero.any(), f"{name}: {m}'s encoder trained on {int(zero.sum())} zero (absent) rows"
        else:
            n_absent = int((~present[:, k]).sum())
            assert int(zero.sum()) == n_absent and len(ids) == len(want), (
                f"{name}: {m} should see each sample once per epoch, absent ones ({n_absent}) as zeros")
            for x in method.encoders[m].seen[True]:  # zero rows are exact zeros, not small values
                assert torch.equal(x[(x == 0).all(1)], torch.zeros_like(x[(x == 0).all(1)]))


@pytest.mark.parametrize("name", END_TO_END)
def test_construction_keeps_sizes_and_rejects_unknown_options(name):
    mods = mods_for(name)
    method = build(name, mods)
    assert (method.modalities, method.n_classes, method.feature_dim) == (mods, N_CLASSES, S)
    assert method.options == {**type(method).defaults, **OPTIONS.get(name, {})}
    with pytest.raises(ValueError) as err:
        create_method(name, nn.ModuleDict({m: Recorder(0) for m in mods}), n_classes=N_CLASSES, feature_dim=S,
                      zap=2, bogus=1)
    valid = ", ".join(sorted(type(method).defaults)) or "(none)"
    assert str(err.value) == f"method {type(method).__name__}: unknown option(s) bogus, zap; valid options: {valid}"
    if len(mods) > 1:
        with pytest.raises(ValueError, match=f"^method {type(method).__name__} supports .* modalities, got 1$"):
            create_method(name, nn.ModuleDict({"audio": Recorder(0)}), n_classes=N_CLASSES, feature_dim=S)


@pytest.mark.parametrize("name", END_TO_END)
def test_option_values_outside_the_choices_are_named(name):
    """Every option with a fixed set of values (a method's ``choices``) rejects another value with
    a message naming the method, the option, the value and the valid values."""
    mods = mods_for(name)
    for key, valid in getattr(METHODS.get(name), "choices", {}).items():
        with pytest.raises(ValueError) as err:
            create_method(name, nn.ModuleDict({m: Recorder(0) for m in mods}), n_classes=N_CLASSES,
                          feature_dim=S, **{key: "bogus"})
        assert str(err.value) == f"method {name}: option {key}='bogus'; valid: {', '.join(valid)}"


@pytest.mark.parametrize("name,key,message", [
    ("film", "reverse", "method film: option reverse must be true or false, got 'yes'"),
    ("bigated", "reverse", "method bigated: option reverse must be true or false, got 'yes'"),
    ("mla_released", "torch18_zero_grad", "method mla_released: option torch18_zero_grad must be true or false"),
    ("mla_released", "eval_block", "method mla_released: option eval_block='yes'; must be a positive integer"),
])
def test_true_false_and_integer_options_are_checked(name, key, message):
    mods = mods_for(name)
    with pytest.raises(ValueError) as err:
        create_method(name, nn.ModuleDict({m: Recorder(0) for m in mods}), n_classes=N_CLASSES, feature_dim=S,
                      **{key: "yes"})
    assert str(err.value) == message


@pytest.mark.parametrize("name", END_TO_END)
def test_epoch_order_is_a_function_of_the_run_generator(name):
    """The batches of an epoch depend on the run's generator only (resume and seeds rely on it),
    not on torch's global generator; another generator seed gives another order."""
    mods = mods_for(name)
    present = mask_for(len(mods))
    data = to_tensors(arrays_for(mods, present, 0.0), np.arange(N) % N_CLASSES, mods, present)

    def order(gen_seed: int, global_seed: int) -> list[list[int]]:
        method = build(name, mods)
        torch.manual_seed(global_seed)
        return [b["index"].tolist() for b in method.epoch_batches(data, 4, torch.Generator().manual_seed(gen_seed))]

    first = order(5, 0)
    assert order(5, 123) == first
    assert order(6, 0) != first


@pytest.mark.parametrize("name", END_TO_END)
def test_absent_values_never_reach_loss_parameters_or_predictions(name):
    """Two datasets that differ only in what absent entries hold give bit-identical losses,
    parameters, buffers and predictions."""
    a, data_a, present, loss_a = train_epochs(name, absent_value=1e3)
    b, data_b, _, loss_b = train_epochs(name, absent_value=-7.0)
    assert loss_a == loss_b and all(np.isfinite(loss_a))
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), f"{name}: {key} depends on absent entries' values"
    a.eval(), b.eval()
    with torch.no_grad():
        pa, pb = a.predict(data_a.batch(torch.arange(N))), b.predict(data_b.batch(torch.arange(N)))
    assert pa.keys() == pb.keys()
    for key in pa:
        assert torch.isfinite(pa[key]).all() and torch.equal(pa[key], pb[key]), f"{name}: prediction {key}"


@pytest.mark.parametrize("name", END_TO_END)
def test_forward_of_an_absent_modality(name):
    """At prediction every encoder gets a zero row for an absent entry; with ``fused`` "present" a
    sample with one modality is predicted by that modality's logits alone (its fusion weight 1)."""
    method, data, present, _ = train_epochs(name, absent_value=1e3, epochs=1)
    method.eval()
    with torch.no_grad():
        out = method.predict(data.batch(torch.arange(N)))
    for k, m in enumerate(method.modalities):
        (x,) = method.encoders[m].seen[False]
        assert torch.equal(x[~torch.from_numpy(present[:, k])], torch.zeros(int((~present[:, k]).sum()), D_IN))
        assert torch.equal(x[:, 0][torch.from_numpy(present[:, k])],
                           torch.from_numpy(np.flatnonzero(present[:, k]) + 1.0).float())
    if ABSENT[name][1] == "present":
        keys = [key for key in out if key == "multi" or key.startswith("multi:")]
        for i in np.flatnonzero(present.sum(1) == 1):
            (k,) = np.flatnonzero(present[i])
            for key in keys:
                torch.testing.assert_close(out[key][i], out[method.modalities[k]][i], rtol=1e-6, atol=1e-6,
                                           msg=f"{name}: {key} of sample {i} (only {method.modalities[k]})")


def test_late_fusion_loads_the_unimodal_runs():
    """late_fusion scores the unimodal models it is given: per modality their own logits, fused
    by the mean of the present modalities' logits."""
    mods = ("audio", "video")
    units = {}
    for k, m in enumerate(mods):
        torch.manual_seed(20 + k)
        units[m] = create_method("unimodal", nn.ModuleDict({m: nn.Linear(D_IN, S)}), n_classes=N_CLASSES, feature_dim=S)
    torch.manual_seed(30)
    late = create_method("late_fusion", nn.ModuleDict({m: nn.Linear(D_IN, S) for m in mods}),
                         n_classes=N_CLASSES, feature_dim=S)
    late.load_branches({m: u.state_dict() for m, u in units.items()})
    g = torch.Generator().manual_seed(0)
    batch = {m: torch.randn(5, D_IN, generator=g) for m in mods}
    batch["present"] = torch.tensor([[True, True], [True, False], [False, True], [True, True], [True, True]])
    with torch.no_grad():
        out = late.predict(batch)
        own = {m: units[m].predict({m: batch[m]})[m] for m in mods}
    for m in mods:
        assert torch.equal(out[m], own[m])
    both = (own["audio"] + own["video"]) / 2
    expect = torch.stack([both[0], own["audio"][1], own["video"][2], both[3], both[4]])
    torch.testing.assert_close(out["multi"], expect, rtol=1e-6, atol=1e-6)


def test_late_fusion_leaves_a_branch_without_samples_untouched():
    """A batch in which no sample has video trains audio only: the video branch keeps its weights
    even under SGD momentum and weight decay (its gradients are None, not zero)."""
    mods = ("audio", "video")
    torch.manual_seed(0)
    late = create_method("late_fusion", nn.ModuleDict({m: nn.Linear(D_IN, S) for m in mods}),
                         n_classes=N_CLASSES, feature_dim=S)
    opt = torch.optim.SGD(late.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    g = torch.Generator().manual_seed(1)
    batch = {m: torch.randn(4, D_IN, generator=g) for m in mods}
    batch["label"] = torch.tensor([0, 1, 2, 0])
    batch["present"] = torch.ones(4, 2, dtype=torch.bool)
    late.train_step(batch, opt)  # both branches move and get momentum
    video = {k: v.clone() for k, v in late.branches["video"].state_dict().items()}
    audio = {k: v.clone() for k, v in late.branches["audio"].state_dict().items()}
    batch["present"] = torch.tensor([[True, False]] * 4)
    batch["video"] = torch.zeros(4, D_IN)
    late.train_step(batch, opt)
    for k, v in late.branches["video"].state_dict().items():
        assert torch.equal(v, video[k]), k
    assert any(not torch.equal(v, audio[k]) for k, v in late.branches["audio"].state_dict().items())


# --- presence masks ---------------------------------------------------------------------------
@pytest.mark.parametrize("n,m,rate", [(200, 2, 0.3), (200, 3, 0.5), (97, 3, 0.2), (40, 2, 0.1)])
def test_released_mask_keeps_one_per_sample_and_the_rate(n, m, rate):
    mask = released_mask(n, m, rate, np.random.RandomState(0))
    assert mask.shape == (n, m) and mask.dtype == bool
    assert mask.any(1).all(), "every sample keeps a modality"
    assert abs(mask.mean() - (1 - rate)) < max(0.005, 1 / (n * m))
    assert not mask.all(1).all(), "extra entries are drawn, not everything switched on"


@pytest.mark.parametrize("m,rate", [(2, 0.5), (2, 0.9), (3, 0.7), (3, 2 / 3)])
def test_released_mask_at_most_one_over_m_keeps_exactly_one(m, rate):
    mask = released_mask(300, m, rate, np.random.RandomState(1))
    assert (mask.sum(1) == 1).all()
    # every modality is the kept one for about 1/m of the samples (uniform draw)
    assert np.all(np.abs(mask.mean(0) - 1 / m) < 0.1)


def test_released_mask_within_one_entry_on_tiny_splits():
    """Where 0.005 is less than one entry, the kept count is within one entry of (1 - rate) n M."""
    for seed in range(40):
        mask = released_mask(10, 3, 0.4, np.random.RandomState(seed))
        assert abs(int(mask.sum()) - 18) <= 1 and mask.any(1).all(), seed


def test_released_mask_redraws_when_the_draws_hit_only_kept_entries():
    """n = 2, M = 2, rate 0.25: one entry to switch on after one per sample; a first draw that lands
    only on kept entries is redrawn (the original divides by zero there), and within a quarter
    (one entry of four) of 0.75 means exactly 3 entries."""
    for seed in range(60):
        mask = released_mask(2, 2, 0.25, np.random.RandomState(seed))
        assert int(mask.sum()) == 3 and mask.any(1).all(), seed


def test_released_mask_rate_zero_keeps_everything_and_gives_up_loudly():
    for n, m in ((5, 3), (3000, 2), (3000, 3)):
        for seed in range(20):  # rate 0 keeps every entry, whatever the generator
            mask = released_mask(n, m, 0.0, np.random.RandomState(seed))
            assert mask.dtype == bool and mask.shape == (n, m) and mask.all(), (n, m, seed)
    with pytest.raises(RuntimeError, match="no mask within"):
        released_mask(50, 3, 0.4, np.random.RandomState(0), max_tries=0)


def test_independent_mask_rates():
    rs = np.random.RandomState(0)
    assert independent_mask(50, 2, 0.0, rs).all() and not independent_mask(50, 2, 1.0, rs).any()
    mask = independent_mask(4000, 3, 0.3, np.random.RandomState(2))
    assert abs(mask.mean() - 0.7) < 0.02 and not mask.any(1).all()  # some samples lose everything


def test_draw_mask_is_a_function_of_its_arguments():
    a = draw_mask("released", 60, 3, 0.4, 0, "train")
    assert np.array_equal(a, draw_mask("released", 60, 3, 0.4, 0, "train"))
    for other in (draw_mask("released", 60, 3, 0.4, 1, "train"), draw_mask("released", 60, 3, 0.4, 0, "test"),
                  draw_mask("released", 60, 3, 0.5, 0, "train")):
        assert not np.array_equal(a, other)
    # the generator is seeded by (seed, rate in thousandths, split index): 0.7 -> 700, "test" -> 2
    expect = np.random.RandomState(np.random.SeedSequence([0, 700, 2]).generate_state(1)[0]).random_sample((60, 3))
    assert np.array_equal(draw_mask("independent", 60, 3, 0.7, 0, "test"), expect >= 0.7)
    with pytest.raises(ValueError, match="unknown masking 'paper'; valid: released, independent"):
        draw_mask("paper", 60, 3, 0.4, 0, "train")


# --- scoring and selection --------------------------------------------------------------------
def test_accuracies_hand_counted_any_batch_size():
    """concat on identity features: logits = features, so the argmax is set by hand per sample."""
    enc = nn.ModuleDict({m: nn.Identity() for m in ("audio", "video")})
    method = create_method("concat", enc, n_classes=2, feature_dim=2)
    with torch.no_grad():
        method.head.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 1.0]]))  # multi: a0 vs v1
        method.head.bias.zero_()
    audio = np.array([[1, 0], [0, 1], [1, 0], [2, 0], [0, 0.5]], dtype=np.float32)
    video = np.array([[0, 2], [0, 0], [0, 3], [0, 1], [0, 1]], dtype=np.float32)
    labels = np.array([1, 0, 0, 0, 1])
    data = to_tensors({"audio": audio, "video": video}, labels, ("audio", "video"))
    # multi: [a0 vs v1] = 1<2 ->1 ok, 0=0 ->0 ok, 1<3 ->1 no, 2>1 ->0 ok, 0<1 ->1 ok: 4/5
    # audio sub-head: (a0, 0): argmax 0 except ties -> 0: preds 0,0,0,0,0 -> 3/5
    # video sub-head: (0, v1): 1,0(tie),1,1,1 -> 1,0,1,1,1 -> labels 1,0,0,0,1 -> 3/5
    method.train()
    for bs in (1, 2, 5, 64):
        assert accuracies(method, data, bs) == {"audio": 60.0, "multi": 80.0, "video": 60.0}
    assert method.training
    method.eval()
    accuracies(method, data, 2)
    assert not method.training
    assert accuracies(method, to_tensors({"audio": audio[:3], "video": video[:3]}, labels[:3], ("audio", "video")),
                      2) == {"audio": 66.6667, "multi": 66.6667, "video": 66.6667}


def test_split_metrics():
    plain, fusion = split_metrics({"multi": 1.0, "audio": 2.0, "multi:dynamic": 3.0, "multi:uniform": 4.0})
    assert plain == {"multi": 1.0, "audio": 2.0}
    assert fusion == {"dynamic": 3.0, "uniform": 4.0}


def test_selection_keeps_the_first_best_epoch():
    method = nn.Linear(1, 1)
    sel = Selection("val")
    history = [(1, 50.0, 40.0), (2, 60.0, 30.0), (3, 60.0, 70.0), (4, 55.0, 70.0)]
    states = {}
    for epoch, val, test in history:
        with torch.no_grad():
            method.weight.fill_(float(epoch))
        states[epoch] = {"val": {"multi": val}, "test": {"multi": test}}
        sel.update(epoch, states[epoch], method)
    assert sel.best_epoch == 2 and sel.best == states[2]  # 60 at epoch 3 ties: the first stays
    assert float(sel.best_state["weight"]) == 2.0  # a copy, not the live weights (now 4)
    assert sel.best_test == {"epoch": 3, "multi": 70.0}
    assert sel.last == states[4]


def test_selection_on_test_alone_per_fusion_rule():
    """val_fraction 0 (the released protocol): selection on test, and each fusion rule's entry has
    no validation accuracy."""
    sel = Selection("test")
    method = nn.Linear(1, 1)
    sel.update(1, {"test": {"multi": 50.0, "multi:dynamic": 50.0, "multi:uniform": 60.0}}, method)
    sel.update(2, {"test": {"multi": 55.0, "multi:dynamic": 58.0, "multi:uniform": 59.0}}, method)
    assert sel.best_epoch == 2
    assert sel.fusion_best == {"dynamic": {"epoch": 2, "val": None, "test": 58.0},
                               "uniform": {"epoch": 1, "val": None, "test": 60.0}}


def test_if_mmin_teacher_reads_encodings_and_their_invariant_features():
    """IF-MMIN's fusion teacher (``UttSharedModel``): the classifier reads every modality's encoding
    and then every encoding's shared invariant feature; MMIN's reads the encodings alone."""
    from mla.methods.mmin import FusionTeacher
    torch.manual_seed(0)
    mods = ("audio", "text")
    feats = {m: torch.randn(5, 6) for m in mods}
    for shared in (True, False):
        t = FusionTeacher(mods, 6, 4, (8,), 3, 0.0, shared=shared)
        t.eval()
        emb = [t.utt[m](feats[m]) for m in mods]
        parts = emb + ([t.shared(e) for e in emb] if shared else [])
        assert t.classifier[0].in_features == 4 * len(parts)
        torch.testing.assert_close(t(feats), t.classifier(torch.cat(parts, dim=1)))
