"""t-SNE coordinates of encoder features and the analysis step that writes gap.json + tsne.npz.

The training code writes ``embeddings_<method>.npz`` (arrays ``features_<modality>`` (N, s) and
``labels`` (N,)) into ``grid.analysis_dir(cfg, dataset)`` and then calls :func:`analyse`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits

from mla import catalog
from mla.analysis.gap import DEFINITION, gap_summary, l2_normalise
from mla.io import save_npz

def subsample(n: int, n_points: int, seed: int) -> np.ndarray:
    """Sorted indices of ``min(n, n_points)`` samples drawn without replacement with ``seed``."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=min(n, n_points), replace=False))


def tsne_coords(
    features: dict[str, np.ndarray], n_points: int, seed: int, labels: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """2-D t-SNE of the L2-normalised features of all modalities, stacked.

    The same ``n_points`` samples (chosen with ``seed``) are taken from every modality, so the
    clouds differ only by modality. Returns ``coords`` (N, 2) float32, ``modality`` (N,) index
    into ``modalities`` (the dict's order), ``labels`` (N,) (-1 when none given), ``modalities``.
    """
    names = list(features)
    n = len(features[names[0]])
    if any(len(features[m]) != n for m in names):
        raise ValueError(f"t-SNE needs the same samples for every modality, got {[len(features[m]) for m in names]}")
    idx = subsample(n, n_points, seed)
    x = np.concatenate([l2_normalise(features[m][idx]) for m in names])
    lab = np.full(n, -1, dtype=np.int64) if labels is None else np.asarray(labels).astype(np.int64)
    # One thread: OpenMP reductions inside Barnes-Hut t-SNE would otherwise make the
    # coordinates depend on the core count.
    with threadpool_limits(limits=1):
        tsne = TSNE(
            n_components=2,
            perplexity=min(30.0, (len(x) - 1) / 3.0),
            init="pca",
            learning_rate="auto",
            random_state=seed,
        )
        coords = tsne.fit_transform(x)
    return {
        "coords": coords.astype(np.float32),
        "modality": np.repeat(np.arange(len(names)), len(idx)),
        "labels": np.tile(lab[idx], len(names)),
        "modalities": np.array(names),
    }


def load_embeddings(path: str | Path, modalities: tuple[str, ...]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``features_<modality>`` arrays (in ``modalities`` order) and ``labels`` of one embeddings file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"embeddings file {path} does not exist")
    with np.load(path, allow_pickle=False) as z:
        missing = [f"features_{m}" for m in modalities if f"features_{m}" not in z] + (
            [] if "labels" in z else ["labels"]
        )
        if missing:
            raise KeyError(f"{path} lacks arrays {missing}")
        return {m: z[f"features_{m}"] for m in modalities}, z["labels"]


def analyse(cfg: dict, dataset: str, out_dir: str,
            per_seed: dict[str, dict[str, dict[str, float]]] | None = None) -> None:
    """Write ``gap.json`` and ``tsne.npz`` from the ``embeddings_<method>.npz`` files in ``out_dir``.

    The gap uses every test sample; t-SNE uses ``analysis.tsne_points`` samples per modality,
    seeded with ``analysis.seed``. ``per_seed`` (method -> seed -> pair -> gap, measured on every
    seed's run) is written as ``gap_per_seed``; ``gap`` is the ``analysis.seed`` run's, which the
    t-SNE shows.
    """
    out = Path(out_dir)
    modalities = catalog.dataset_info(dataset).modalities
    seed, n_points = int(cfg["analysis"]["seed"]), int(cfg["analysis"]["tsne_points"])
    gaps: dict[str, dict[str, float]] = {}
    arrays: dict[str, np.ndarray] = {"modalities": np.array(modalities)}
    n_samples = {}
    for method in cfg["analysis"]["methods"]:
        feats, labels = load_embeddings(out / f"embeddings_{method}.npz", modalities)
        gaps[method] = {k: round(v, 4) for k, v in gap_summary(feats).items()}
        n_samples[method] = int(len(labels))
        t = tsne_coords(feats, n_points, seed, labels)
        for key in ("coords", "modality", "labels"):
            arrays[f"{method}_{key}"] = t[key]
    doc = {
        "dataset": dataset,
        "definition": DEFINITION,
        "gap": gaps,
        "gap_per_seed": {m: {s: {k: round(v, 4) for k, v in g.items()} for s, g in by_seed.items()}
                         for m, by_seed in (per_seed or {}).items()},
        "modalities": list(modalities),
        "n_samples": n_samples,
        "seed": seed,
        "tsne_points": n_points,
    }
    (out / "gap.json").write_text(json.dumps(doc, sort_keys=True, indent=2) + "\n")
    save_npz(out / "tsne.npz", arrays)
