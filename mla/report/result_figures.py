"""The report's result figures, drawn from the same :class:`~mla.report.tables.Table` objects as the tables
(one source of numbers): Table 1 as grouped bars, Table 2 as accuracy-against-missing-rate curves, Table 3
as bars. Each has our numbers (mean ± sample std over seeds as error bars or bands) and, in a separate
labelled panel, the paper's numbers for the paired dataset.

Legible for one to three datasets and up to twenty methods: each method keeps one colour (20 distinct) and
one marker in every figure; legends sit outside the axes; the canvas grows with the number of bars.
Drawn like :mod:`mla.report.figures` (bare Figure, fixed dpi, no metadata), so PNGs are byte-identical.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib
import matplotlib.style
import numpy as np
from matplotlib.figure import Figure

from mla.report.tables import Table

DPI = 100
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p", "d", "8", "H", "1", "2", "3", "4", "+")
_TAB20 = matplotlib.colormaps["tab20"].colors
# tab20's dark shades first, then its light ones: neighbours in the list stay far apart.
PALETTE = tuple(_TAB20[0::2]) + tuple(_TAB20[1::2])


def style_of(names: list[str]) -> dict[str, tuple]:
    """A fixed (colour, marker) per name, by position in ``names`` (the figure-wide method order)."""
    return {n: (PALETTE[i % len(PALETTE)], MARKERS[i % len(MARKERS)]) for i, n in enumerate(names)}


def method_order(tables: dict[str, Table]) -> list[str]:
    """Every column/row name that appears as a method in Tables 1-3, in first-seen order."""
    seen: list[str] = []
    for t in (tables.get("table1"), tables.get("table2")):
        for b in (t.blocks if t else []):
            if b.key.endswith("/realised") or b.key.endswith("/diff"):
                continue
            names = list(b.frame.columns) if t.name == "table1" else list(b.frame.index)
            seen += [n for n in names if n not in seen]
    return seen


def _stat(v) -> tuple[float, float] | None:
    """(mean, std) of a block value: a Stat dict, a paper float, or None for text cells."""
    if isinstance(v, dict) and "mean" in v:
        return float(v["mean"]), float(v["std"] or 0.0)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v), 0.0
    return None


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None}, bbox_inches="tight")
    return path


def _empty(path: Path, text: str) -> Path:
    with matplotlib.style.context("default"):
        fig = Figure(figsize=(5.0, 1.2), dpi=DPI)
        fig.text(0.5, 0.5, text, ha="center", va="center")
        return _save(fig, path)


def _groups(table: Table) -> list[tuple[str, list]]:
    """Blocks grouped per dataset, in table order."""
    out: dict[str, list] = {}
    for b in table.blocks:
        out.setdefault(b.group, []).append(b)
    return list(out.items())


def _bars(ax, values: dict, rows: list[str], cols: list[str], styles: dict, title: str) -> list[str]:
    """Grouped bars: one group per row, one bar per column with a number; returns the columns drawn."""
    drawn = [c for c in cols if any(_stat(values.get(r, {}).get(c)) for r in rows)]
    width = 0.8 / max(1, len(drawn))
    for k, c in enumerate(drawn):
        xs, ms, ss = [], [], []
        for i, r in enumerate(rows):
            st = _stat(values.get(r, {}).get(c))
            if st:
                xs.append(i - 0.4 + width * (k + 0.5))
                ms.append(st[0])
                ss.append(st[1])
        colour = styles.get(c, ("#777777", "o"))[0]
        err = {"yerr": ss, "capsize": 2, "error_kw": {"elinewidth": 0.8}} if any(ss) else {}
        ax.bar(xs, ms, width, color=colour, label=c, **err)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(rows)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("\n".join(textwrap.wrap(title, 60)), fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    return drawn


def _legend(fig: Figure, ax, styles: dict, names: list[str], line: bool = False) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Line2D([], [], color=styles[n][0], marker=styles[n][1], label=n) if line
               else Patch(color=styles[n][0], label=n) for n in names]
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
              ncol=1 if len(names) <= 12 else 2)


def table1_figure(table: Table, styles: dict, out_path: str | Path) -> Path:
    """Per dataset: our cells as grouped bars with ±1 std error bars; the paper's paired dataset beside."""
    groups = _groups(table)
    if not groups:
        return _empty(Path(out_path), "Table 1: no dataset in this config")
    ncols = max(len([b for b in bl if not b.key.endswith("/diff")]) for _, bl in groups)
    n_bars = max(len(b.frame.columns) * len(b.frame.index) for _, bl in groups for b in bl)
    w = max(6.0, 0.16 * n_bars + 2.5)
    with matplotlib.style.context("default"):
        fig = Figure(figsize=(w * ncols, 3.6 * len(groups)), dpi=DPI)
        axes = fig.subplots(len(groups), ncols, squeeze=False)
        for i, (d, blocks) in enumerate(groups):
            shown = [b for b in blocks if not b.key.endswith("/diff")]
            for j, b in enumerate(shown):
                ax = axes[i][j]
                drawn = _bars(ax, b.values, list(b.frame.index), list(b.frame.columns), styles, b.title)
                _legend(fig, ax, styles, drawn)
            for j in range(len(shown), ncols):
                axes[i][j].set_visible(False)
        fig.suptitle("Table 1: complete modalities (ours: mean ± std over seeds; paper: as printed)", fontsize=10)
        fig.tight_layout()
        return _save(fig, Path(out_path))


def _rate(col: str) -> float:
    return float(col.rstrip("%"))


def _curves(ax, values: dict, rows: list[str], cols: list[str], styles: dict, title: str) -> list[str]:
    drawn = []
    for r in rows:
        pts = [(_rate(c), _stat(values.get(r, {}).get(c))) for c in cols]
        pts = [(x, st) for x, st in pts if st]
        if not pts:
            continue
        x = np.array([p[0] for p in pts])
        m = np.array([p[1][0] for p in pts])
        s = np.array([p[1][1] for p in pts])
        colour, marker = styles.get(r, ("#777777", "o"))
        ax.plot(x, m, color=colour, marker=marker, markersize=4, linewidth=1.2, label=r)
        if s.any():
            ax.fill_between(x, m - s, m + s, color=colour, alpha=0.15, linewidth=0)
        drawn.append(r)
    ax.set_xlabel("missing rate η (%)")
    ax.set_ylabel("test accuracy (%), fused")
    ax.set_title("\n".join(textwrap.wrap(title, 60)), fontsize=9)
    ax.grid(alpha=0.3)
    return drawn


def table2_figure(table: Table, styles: dict, masking: str, out_path: str | Path) -> Path:
    """Per dataset: accuracy against missing rate, one curve per method with a ±1 std band; paper beside."""
    groups = _groups(table)
    if not groups:
        return _empty(Path(out_path), "Table 2: no dataset in this config's missing phase")
    with matplotlib.style.context("default"):
        fig = Figure(figsize=(13.0, 3.8 * len(groups)), dpi=DPI)
        axes = fig.subplots(len(groups), 2, squeeze=False)
        for i, (d, blocks) in enumerate(groups):
            by = {b.key.split("/")[-1]: b for b in blocks}
            for j, kind in enumerate(("ours", "paper")):
                ax = axes[i][j]
                b = by.get(kind)
                if b is None:
                    ax.set_visible(False)
                    continue
                drawn = _curves(ax, b.values, list(b.frame.index), list(b.frame.columns), styles, b.title)
                _legend(fig, ax, styles, drawn, line=True)
        fig.suptitle(f"Table 2: missing modalities (masking: {masking}; bands: ±1 std over seeds)", fontsize=10)
        fig.tight_layout()
        return _save(fig, Path(out_path))


VARIANTS = {"none": "no HGM, no DF", "df": "DF only", "hgm": "HGM only", "hgm_df": "HGM + DF"}


def table3_figure(table: Table, out_path: str | Path) -> Path:
    """Per dataset: the four HGM x DF variants as bars for every row (ours with ±1 std; the paper beside)."""
    groups = _groups(table)
    if not groups:
        return _empty(Path(out_path), "Table 3: no dataset in this config's ablation")
    styles = {k: (PALETTE[i * 2], MARKERS[i]) for i, k in enumerate(VARIANTS)}
    with matplotlib.style.context("default"):
        fig = Figure(figsize=(12.0, 3.4 * len(groups)), dpi=DPI)
        axes = fig.subplots(len(groups), 2, squeeze=False)
        for i, (d, blocks) in enumerate(groups):
            by = {b.key.split("/")[-1]: b for b in blocks}
            for j, kind in enumerate(("ours", "paper")):
                ax, b = axes[i][j], by.get(kind)
                if b is None:
                    ax.set_visible(False)
                    continue
                cols = [c for c in b.frame.columns if c in VARIANTS]
                drawn = _bars(ax, b.values, list(b.frame.index), cols, styles, b.title)
                named = {VARIANTS[c]: styles[c] for c in drawn}
                _legend(fig, ax, named, list(named))
        fig.suptitle("Table 3: ablation of HGM and DF (DF changes only the multi row)", fontsize=10)
        fig.tight_layout()
        return _save(fig, Path(out_path))
