"""Modality gap on hand-made vectors, and the t-SNE/analysis step."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mla.analysis.gap import gap_summary, modality_gap
from mla.analysis.tsne import save_npz, tsne_coords


def test_orthogonal_unit_clusters_have_gap_sqrt2():
    a = np.array([[1.0, 0.0], [3.0, 0.0], [0.5, 0.0]])   # lengths differ: rows are L2-normalised first
    b = np.array([[0.0, 2.0], [0.0, 1.0]])
    assert modality_gap(a, b) == pytest.approx(math.sqrt(2))


def test_gap_of_spread_cluster_by_hand():
    a = np.array([[1.0, 0.0], [0.0, 1.0]])   # centroid (0.5, 0.5)
    b = np.array([[2.0, 0.0]])                 # centroid (1, 0)
    assert modality_gap(a, b) == pytest.approx(math.sqrt(0.5))
    assert modality_gap(a, a) == 0.0


def test_gap_summary_pairs_in_modality_order_and_mean():
    e = np.eye(3)
    feats = {"audio": e[[0]], "image": e[[1]], "text": e[[0]]}
    g = gap_summary(feats)
    assert list(g) == ["audio-image", "audio-text", "image-text", "mean"]
    assert g["audio-text"] == 0.0
    assert g["mean"] == pytest.approx(2 * math.sqrt(2) / 3)


def test_gap_rejects_mismatched_widths():
    with pytest.raises(ValueError):
        modality_gap(np.ones((2, 3)), np.ones((2, 4)))


def test_tsne_is_seeded_and_shaped():
    rng = np.random.default_rng(0)
    feats = {"audio": rng.normal(size=(50, 8)), "video": rng.normal(size=(50, 8)) + 2}
    labels = np.arange(50) % 4
    t1 = tsne_coords(feats, 20, seed=3, labels=labels)
    t2 = tsne_coords(feats, 20, seed=3, labels=labels)
    assert t1["coords"].shape == (40, 2)
    assert list(t1["modality"]) == [0] * 20 + [1] * 20
    assert np.array_equal(t1["labels"][:20], t1["labels"][20:])   # the same samples per modality
    np.testing.assert_array_equal(t1["coords"], t2["coords"])


def test_save_npz_is_byte_identical(tmp_path):
    arrays = {"b": np.arange(3), "a": np.array(["x", "yz"])}
    save_npz(tmp_path / "1.npz", arrays)
    save_npz(tmp_path / "2.npz", arrays)
    assert (tmp_path / "1.npz").read_bytes() == (tmp_path / "2.npz").read_bytes()
    with np.load(tmp_path / "1.npz") as z:
        assert list(z["a"]) == ["x", "yz"]
