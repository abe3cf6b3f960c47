"""Figures: t-SNE of concat vs MLA features with the modality gap, and validation curves.

Drawn on a bare ``matplotlib.figure.Figure`` (Agg, no pyplot state) under the default style, with
fixed size and dpi and no "Software" metadata, so regenerated PNGs are byte-identical.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib.style
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mla import grid
from mla.report.collect import JobResult

DPI = 100
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
    return path


def _load_tsne(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        raise FileNotFoundError(f"missing analysis file {path} (expected by the grid)")
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def modality_gap_figure(cfg: dict, gaps: dict[str, dict], out_path: str | Path) -> Path:
    """Grid of t-SNE scatters: rows = analysed datasets, columns = the two analysed methods
    (a figure saying so when the config analyses no dataset, so the report's files are fixed)."""
    datasets, methods = list(cfg["analysis"]["datasets"]), list(cfg["analysis"]["methods"])
    if not datasets:
        with matplotlib.style.context("default"):
            fig = Figure(figsize=(4.2, 1.2), dpi=DPI)
            fig.text(0.5, 0.5, "no dataset analysed (config analysis.datasets is empty)", ha="center", va="center")
            return _save(fig, Path(out_path))
    with matplotlib.style.context("default"):
        fig = Figure(figsize=(4.2 * len(methods), 3.8 * len(datasets)), dpi=DPI)
        axes = fig.subplots(len(datasets), len(methods), squeeze=False)
        for i, d in enumerate(datasets):
            t = _load_tsne(Path(grid.analysis_dir(cfg, d)) / "tsne.npz")
            names = [str(n) for n in t["modalities"]]
            for j, m in enumerate(methods):
                ax, xy, mod = axes[i][j], t[f"{m}_coords"], t[f"{m}_modality"]
                for k, name in enumerate(names):
                    sel = mod == k
                    ax.scatter(xy[sel, 0], xy[sel, 1], s=4, c=COLOURS[k % len(COLOURS)], label=name,
                               alpha=0.7, linewidths=0)
                g = gaps[d]["gap"][m]["mean"]
                ax.set_title(f"{d} — {m}: gap {g:.3f}", fontsize=10)
                ax.set_xticks([])
                ax.set_yticks([])
                if j == 0:
                    ax.legend(loc="best", fontsize=8, markerscale=3)
        fig.suptitle("t-SNE of L2-normalised test-set encoder features (gap = centroid distance, mean over pairs)",
                     fontsize=10)
        fig.tight_layout()
        return _save(fig, Path(out_path))


def val_curve(result: JobResult) -> tuple[list[int], list[float], str]:
    """Epochs and mean-over-seeds multi accuracy per epoch: validation, or test if no validation split."""
    split = "val" if all((rec.get("val") or {}).get("multi") is not None for log in result.logs for rec in log) \
        else "test"
    per_epoch: dict[int, list[float]] = {}
    for log in result.logs:
        for rec in log:
            v = (rec.get(split) or {}).get("multi")
            if v is not None:
                per_epoch.setdefault(int(rec["epoch"]), []).append(float(v))
    # Only epochs every seed reached, so a mean never mixes different sets of seeds.
    n = len(result.logs)
    epochs = sorted(e for e, v in per_epoch.items() if len(v) == n)
    return epochs, [math.fsum(per_epoch[e]) / n for e in epochs], split


def training_curves_figure(cfg: dict, results: dict[str, JobResult], styles: dict[str, tuple],
                           out_path: str | Path) -> Path:
    """One panel per dataset, one line per train job: multi accuracy per epoch, mean over seeds.

    ``styles``: a (colour, marker) per method, the same as in the result figures; unimodal runs take the
    'alone' style and differ by line style."""
    datasets = list(cfg["datasets"])
    ncols = min(3, len(datasets))
    nrows = math.ceil(len(datasets) / ncols)
    with matplotlib.style.context("default"):
        fig = Figure(figsize=(6.4 * ncols, 3.8 * nrows), dpi=DPI)
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax, d in zip(axes, datasets):
            dashes = iter(("--", ":", "-."))
            for r in results.values():
                if r.job.phase == "train" and r.job.dataset == d:
                    ep, acc, split = val_curve(r)
                    colour, marker = styles.get("alone" if r.job.modality else r.job.method, ("k", "."))
                    ax.plot(ep, acc, marker=marker, markersize=3, color=colour, linewidth=1.1,
                            linestyle=next(dashes) if r.job.modality else "-",
                            label=r.job.tag + ("" if split == "val" else " (test)"))
            ax.set_title(d, fontsize=10)
            ax.set_xlabel("epoch")
            ax.set_ylabel("accuracy (%), mean over seeds")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        for ax in axes[len(datasets):]:
            ax.set_visible(False)
        fig.suptitle("Validation accuracy per epoch, train phase\n(multi; unimodal runs: their one modality)",
                     fontsize=10)
        fig.tight_layout()
        fig.savefig(out_path, format="png", dpi=DPI, metadata={"Software": None}, bbox_inches="tight")
        return Path(out_path)
