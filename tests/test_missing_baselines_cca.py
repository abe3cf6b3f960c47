"""CCA, DCCA and DCCAE (mla/methods/cca*.py, dcca.py, dccae.py) against independent computations."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from sklearn.cross_decomposition import CCA as SkCCA
from sklearn.svm import LinearSVC

from mla.batches import to_tensors
from mla.frozen import identity_encoders
from mla.methods.base import create_method
from mla.methods.cca_parts import LinearSVM, cca_fit, total_correlation
from mla.methods.dccae import DCCAE
from tiny import one_thread  # noqa: F401  (fixture)


def correlated_views(n=400, seed=0):
    """Two views sharing two latent signals of different strengths."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    a = np.c_[z[:, 0] + 0.3 * rng.normal(size=n), z[:, 1] + 1.0 * rng.normal(size=n), rng.normal(size=(n, 2))]
    b = np.c_[z[:, 0] + 0.5 * rng.normal(size=n), rng.normal(size=n), z[:, 1] + 0.8 * rng.normal(size=n)]
    return a @ rng.normal(size=(4, 4)), b @ rng.normal(size=(3, 3))


def canonical_correlations_qr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Björck & Golub: the singular values of Qa^T Qb, Q from the QR of the centred views."""
    qa, _ = np.linalg.qr(a - a.mean(0))
    qb, _ = np.linalg.qr(b - b.mean(0))
    return np.linalg.svd(qa.T @ qb, compute_uv=False)


def canonical_correlations_regularised(a, b, r1, r2):
    """ρ of the regularised problem Σab Σbb^-1 Σba w = ρ² Σaa w (scipy's generalised eigensolver)."""
    ac, bc = a - a.mean(0), b - b.mean(0)
    n = len(a)
    saa = ac.T @ ac / (n - 1) + r1 * np.eye(a.shape[1])
    sbb = bc.T @ bc / (n - 1) + r2 * np.eye(b.shape[1])
    sab = ac.T @ bc / (n - 1)
    rho2 = scipy.linalg.eigh(sab @ np.linalg.solve(sbb, sab.T), saa, eigvals_only=True)[::-1]
    return np.sqrt(np.clip(rho2, 0, None))


def test_cca_correlations_match_closed_form_and_sklearn():
    a, b = correlated_views()
    every = np.ones(len(a), bool)
    fit = cca_fit(a, b, every, every, k=2, r1=0.0, r2=0.0)
    np.testing.assert_allclose(fit["corr"], canonical_correlations_qr(a, b)[:2], rtol=1e-10)
    # the projections are canonical variates: unit variance, correlations fit["corr"], uncorrelated otherwise
    za, zb = (a - fit["mean_a"]) @ fit["wa"], (b - fit["mean_b"]) @ fit["wb"]
    np.testing.assert_allclose(np.cov(za.T), np.eye(2), atol=1e-10)
    np.testing.assert_allclose(np.cov(za.T, zb.T)[:2, 2:], np.diag(fit["corr"]), atol=1e-10)
    sk = SkCCA(n_components=2, scale=False, max_iter=5000, tol=1e-12).fit(a, b)
    xs, ys = sk.transform(a, b)
    sk_corr = [abs(np.corrcoef(xs[:, i], ys[:, i])[0, 1]) for i in range(2)]
    np.testing.assert_allclose(fit["corr"], sk_corr, rtol=1e-6)
    # with regularisation: the regularised generalised eigenproblem
    reg = cca_fit(a, b, every, every, k=2, r1=0.3, r2=0.1)
    np.testing.assert_allclose(reg["corr"], canonical_correlations_regularised(a, b, 0.3, 0.1)[:2], rtol=1e-8)


def test_cca_with_missing_rows_uses_present_rows_for_each_view_and_complete_rows_for_the_pair():
    a, b = correlated_views(n=300, seed=1)
    rng = np.random.default_rng(2)
    pa, pb = rng.random(300) > 0.3, rng.random(300) > 0.3
    fit = cca_fit(a, b, pa, pb, k=2, r1=1e-4, r2=1e-4)
    # by hand: means and covariances per view over its rows, the cross-covariance over rows with both
    ma, mb = a[pa].mean(0), b[pb].mean(0)
    both = pa & pb
    saa = np.cov(a[pa].T) + 1e-4 * np.eye(4)
    sbb = np.cov(b[pb].T) + 1e-4 * np.eye(3)
    sab = (a[both] - ma).T @ (b[both] - mb) / (both.sum() - 1)
    rho2 = scipy.linalg.eigh(sab @ np.linalg.solve(sbb, sab.T), saa, eigvals_only=True)[::-1][:2]
    np.testing.assert_allclose(fit["corr"], np.sqrt(rho2), rtol=1e-8)
    np.testing.assert_allclose(fit["mean_a"], ma)
    assert fit["n_both"] == both.sum()
    # absent rows are never read: other values there give the same fit
    a2, b2 = a.copy(), b.copy()
    a2[~pa], b2[~pb] = 1e6, np.nan
    again = cca_fit(a2, b2, pa, pb, k=2, r1=1e-4, r2=1e-4)
    for key in ("corr", "wa", "wb", "mean_a", "mean_b"):
        np.testing.assert_allclose(again[key], fit[key])
    # no row with both views: no cross-covariance, every correlation 0
    none = cca_fit(a, b, pa & ~pb, pb & ~pa, k=2, r1=1e-4, r2=1e-4)
    np.testing.assert_allclose(none["corr"], 0.0, atol=1e-12)


def test_dcca_objective_is_the_sum_of_canonical_correlations():
    rng = np.random.default_rng(3)
    h1 = torch.tensor(rng.normal(size=(50, 4)))
    h2 = torch.tensor(rng.normal(size=(50, 4)) + 0.8 * h1.numpy()[:, [1, 0, 3, 2]])
    # no regularisation: all k = 4 canonical correlations, and the top 2
    exact = canonical_correlations_qr(h1.numpy(), h2.numpy())
    assert float(total_correlation(h1, h2, k=4, r1=0.0, r2=0.0, eps=1e-300)) == pytest.approx(exact.sum(), rel=1e-9)
    assert float(total_correlation(h1, h2, k=2, r1=0.0, r2=0.0, eps=1e-300)) == pytest.approx(exact[:2].sum(), rel=1e-9)
    # GCNet's regularisation: r1, r2 on the covariances and r1 added to T^T T: sqrt(rho^2 + r1)
    rho = canonical_correlations_regularised(h1.numpy(), h2.numpy(), 1e-3, 2e-3)
    expected = np.sqrt(rho[:3] ** 2 + 1e-3).sum()
    assert float(total_correlation(h1, h2, k=3, r1=1e-3, r2=2e-3)) == pytest.approx(expected, rel=1e-9)
    # differentiable
    h1.requires_grad_(True)
    total_correlation(h1, h2, k=4, r1=1e-3, r2=1e-3).backward()
    assert torch.isfinite(h1.grad).all() and h1.grad.abs().sum() > 0


def _batch(mods, n=40, s=6, seed=4, p_missing=0.25):
    rng = np.random.default_rng(seed)
    x = {m: torch.tensor(rng.normal(size=(n, s)), dtype=torch.float32) for m in mods}
    present = torch.tensor(rng.random((n, len(mods))) > p_missing)
    present[~present.any(1), 0] = True
    return {**x, "present": present, "label": torch.tensor(np.arange(n) % 3), "index": torch.arange(n)}


@pytest.mark.parametrize("mods", [("audio", "text"), ("audio", "image", "text")])
def test_dcca_loss_correlates_only_rows_with_both_modalities(mods):
    torch.manual_seed(0)
    dcca = create_method("dcca", identity_encoders(mods), n_classes=3, feature_dim=6, hidden=8, n_components=3)
    dcca.eval()  # BatchNorm by running statistics: a row's output does not depend on the other rows
    batch = _batch(mods)
    with torch.no_grad():
        loss = dcca.correlation_loss(batch, dcca.outputs(batch))
        expected = 0.0
        for a, b in dcca.pairs:
            both = batch["present"][:, a] & batch["present"][:, b]
            ha = dcca.nets[mods[a]](batch[mods[a]][both]).double().numpy()
            hb = dcca.nets[mods[b]](batch[mods[b]][both]).double().numpy()
            expected += np.sqrt(canonical_correlations_regularised(ha, hb, 1e-3, 1e-3) ** 2 + 1e-3).sum()
    assert len(dcca.pairs) == len(mods) * (len(mods) - 1) // 2
    assert float(loss) == pytest.approx(-expected, rel=1e-4)


def test_dcca_step_without_enough_complete_rows_is_counted_not_taken():
    torch.manual_seed(0)
    dcca = create_method("dcca", identity_encoders(("audio", "text")), n_classes=3, feature_dim=6, hidden=8,
                         n_components=3)
    batch = _batch(("audio", "text"))
    batch["present"][:, 1] = ~batch["present"][:, 0]  # no row has both
    before = [p.clone() for p in dcca.parameters()]
    opt = torch.optim.SGD(dcca.parameters(), lr=0.1)
    assert dcca.train_step(batch, opt) == 0.0
    assert all(torch.equal(p, q) for p, q in zip(dcca.parameters(), before))
    assert dcca.epoch_diagnostics() == {"batches_without_pair": 1}
    assert dcca.epoch_diagnostics() == {"batches_without_pair": 0}  # counted per epoch


def test_dccae_reconstruction_term_by_hand():
    torch.manual_seed(0)
    mods = ("audio", "text")
    model = create_method("dccae", identity_encoders(mods), n_classes=3, feature_dim=6, hidden=5, n_components=2,
                          recon_weight=0.25)
    assert isinstance(model, DCCAE)
    model.eval()
    batch = _batch(mods, n=30)
    with torch.no_grad():
        term = float(model.extra_loss(batch, model.outputs(batch)))
        expected = 0.0
        for i, m in enumerate(mods):
            x = batch[m][batch["present"][:, i]].double().numpy()
            r = model.decoders[m](model.nets[m](batch[m][batch["present"][:, i]])).double().numpy()
            expected += ((r - x) ** 2).sum() / x.size
    assert term == pytest.approx(0.25 * expected, rel=1e-5)
    # decoder sizes mirror the encoder's
    assert [l.out_features for l in model.decoders["audio"] if hasattr(l, "out_features")] == [5, 5, 5, 6]


def test_cca_method_components_svm_and_absent_modalities():
    mods = ("audio", "text")
    rng = np.random.default_rng(5)
    n, s = 120, 6
    labels = np.arange(n) % 3
    a, b = correlated_views(n=n, seed=6)
    arrays = {"audio": np.c_[a, labels[:, None] * 1.0, rng.normal(size=n)].astype(np.float32),
              "text": np.c_[b, labels[:, None] * 1.0, rng.normal(size=(n, 2))].astype(np.float32)}
    present = rng.random((n, 2)) > 0.2
    present[~present.any(1), 0] = True
    data = to_tensors(arrays, labels, mods, present)
    cca = create_method("cca", identity_encoders(mods), n_classes=3, feature_dim=s, n_components=2)
    list(cca.epoch_batches(data, 32, torch.Generator().manual_seed(0)))
    assert bool(cca.fitted)
    assert cca.epoch_diagnostics()["rows_with_both"] == {"audio-text": int((present[:, 0] & present[:, 1]).sum())}
    fit = cca_fit(arrays["audio"], arrays["text"], present[:, 0], present[:, 1], 2, 1e-4, 1e-4)
    np.testing.assert_allclose(cca.corr[0].numpy(), fit["corr"], rtol=1e-5)
    # components: centred features times the projections, zero where the modality is absent
    batch = data.batch(torch.arange(n))
    z = cca.components(batch).double().numpy()
    za = np.where(present[:, :1], (arrays["audio"] - fit["mean_a"]) @ fit["wa"], 0.0)
    zb = np.where(present[:, 1:], (arrays["text"] - fit["mean_b"]) @ fit["wb"], 0.0)
    np.testing.assert_allclose(z, np.c_[za, zb], atol=1e-4)
    # logits: the decision function of a LinearSVC(C=0.01, dual=False) fitted on those components
    svc = LinearSVC(C=0.01, dual=False).fit(np.c_[za, zb], labels)
    out = cca.predict(batch)
    np.testing.assert_allclose(out["multi"].double().numpy(), svc.decision_function(np.c_[za, zb]), atol=1e-3)
    # per-modality prediction: the other modality's components zeroed
    np.testing.assert_allclose(out["audio"].double().numpy(), svc.decision_function(np.c_[za, 0 * zb]), atol=1e-3)
    # fitted once: a second epoch does not refit
    w = cca.proj.clone()
    list(cca.epoch_batches(data, 32, torch.Generator().manual_seed(1)))
    assert torch.equal(w, cca.proj)


def test_linear_svm_logits_match_linearsvc_and_absent_classes_never_win():
    """Multi-class: logits == LinearSVC's decision function on the classes seen, -1e4 on a class the
    training labels lack; two classes: [0, d] so argmax == LinearSVC.predict; one class (LinearSVC
    refuses it): that class everywhere."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(60, 3))
    labels = np.array([0, 1, 3] * 20)
    z[labels == 1, 0] += 2.0
    z[labels == 3, 1] += 2.0
    svm = LinearSVM(3, 4, c=0.5)
    svm.fit(z, labels)
    ref = LinearSVC(C=0.5, dual=False, random_state=0).fit(z, labels)
    logits = svm(torch.from_numpy(z)).numpy()
    np.testing.assert_allclose(logits[:, [0, 1, 3]], ref.decision_function(z), rtol=1e-5, atol=1e-6)  # float32 weights
    np.testing.assert_array_equal(logits[:, 2], np.full(60, LinearSVM.ABSENT_CLASS_BIAS))
    assert not svm.weight.requires_grad and not svm.bias.requires_grad

    two = labels[labels != 3]
    svm2 = LinearSVM(3, 4, c=0.5)
    svm2.fit(z[labels != 3], two)
    ref2 = LinearSVC(C=0.5, dual=False, random_state=0).fit(z[labels != 3], two)
    out = svm2(torch.from_numpy(z[labels != 3])).numpy()
    np.testing.assert_allclose(out[:, 1], ref2.decision_function(z[labels != 3]), rtol=1e-5, atol=1e-6)  # float32 weights
    np.testing.assert_array_equal(out[:, 0], 0.0)
    np.testing.assert_array_equal(out.argmax(1), ref2.predict(z[labels != 3]))
    assert (out[:, [2, 3]] == LinearSVM.ABSENT_CLASS_BIAS).all()

    one = LinearSVM(3, 4, c=0.5)
    one.fit(z[:5], np.full(5, 2))
    pred = one(torch.from_numpy(z)).argmax(1)
    assert (pred == 2).all() and float(one.weight.abs().sum()) == 0.0


def test_dcca_regularisers_enter_at_full_precision():
    """r1, r2 not representable in float32 (0.3, 0.2): the float64 objective matches the independent
    regularised solution to 1e-12, so an identity matrix built in another dtype shows."""
    rng = np.random.default_rng(5)
    h1 = torch.tensor(rng.normal(size=(40, 3)))
    h2 = torch.tensor(rng.normal(size=(40, 3)) + 0.5 * h1.numpy())
    rho = canonical_correlations_regularised(h1.numpy(), h2.numpy(), 0.3, 0.2)
    got = total_correlation(h1, h2, k=3, r1=0.3, r2=0.2)
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(np.sqrt(rho ** 2 + 0.3).sum(), rel=1e-12)


def test_cca_fit_limits_name_the_culprit():
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(30, 4)), rng.normal(size=(30, 3))
    every = np.ones(30, bool)
    assert cca_fit(a, b, every, every, k=3, r1=0.1, r2=0.1)["wa"].shape == (4, 3)  # k = the smaller size
    with pytest.raises(ValueError, match=r"^n_components 4 exceeds the feature size 3: lower "
                                         r"method_options.<method>.n_components$"):
        cca_fit(a, b, every, every, k=4, r1=0.1, r2=0.1)
    two = np.zeros(30, bool)
    two[[3, 7]] = True  # exactly MIN_ROWS rows: enough
    fit = cca_fit(a, b, every, two, k=1, r1=0.1, r2=0.1, names=("audio", "text"))
    np.testing.assert_allclose(fit["mean_b"], b[[3, 7]].mean(0))
    assert fit["n_both"] == 2 and fit["corr"][0] > 0  # two rows with both: a cross-covariance
    one = np.zeros(30, bool)
    one[5] = True
    msg = (r"^modality 'text' is present in 1 training examples; CCA needs at least 2: lower missing.rates or use "
           r"more training data$")
    with pytest.raises(ValueError, match=msg):
        cca_fit(a, b, every, one, k=1, r1=0.1, r2=0.1, names=("audio", "text"))
    with pytest.raises(ValueError, match=msg.replace("'text'", "'audio'")):
        cca_fit(a, b, one, every, k=1, r1=0.1, r2=0.1, names=("audio", "text"))
    # one row with both views (fewer than MIN_ROWS): no cross-covariance, every canonical correlation 0
    first, last = np.arange(30) <= 15, np.arange(30) >= 15
    lone = cca_fit(a, b, first, last, k=2, r1=0.1, r2=0.1)
    assert lone["n_both"] == 1 and np.all(lone["corr"] == 0)


def test_squared_hinge_by_hand():
    """One-vs-rest squared hinge: y = +1 on the label's column, -1 elsewhere; mean of max(0, 1 - y f)^2."""
    svm = LinearSVM(2, 3, c=1.0)
    with torch.no_grad():
        svm.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
        svm.bias.copy_(torch.tensor([0.0, 0.0, 0.5]))
    z = torch.tensor([[2.0, -1.0], [0.25, 0.5]], dtype=torch.float64)
    labels = torch.tensor([0, 2])
    # logits: [2, -1, .5] and [.25, .5, .5]; y: [1,-1,-1] and [-1,-1,1]
    # margins 1 - y f: [-1, 0, 1.5] and [1.25, 1.5, .5] -> squared positive parts [0, 0, 2.25], [1.5625, 2.25, .25]
    expected = (2.25 + 1.5625 + 2.25 + 0.25) / 6
    got = svm.squared_hinge(z, labels)
    assert got.dtype == torch.float64 and float(got) == pytest.approx(expected, rel=1e-12)
