"""``scores.json``: the few headline numbers DVC shows (``dvc metrics show/diff``, ``dvc exp show``).

The report's ``metrics.json`` holds every table cell with its n and std, the paper's numbers and the
claims' verdict strings: hundreds of columns, some of them text. DVC's metrics want scalars, so
this file keeps only our own means: Table 1's fused accuracy per dataset and method, Table 2's per
rate, Table 3's per variant, and the mean modality gap per method (cells not run are left out).
"""
from __future__ import annotations

import json
from pathlib import Path


def _mean(cell: object) -> float | None:
    return cell.get("mean") if isinstance(cell, dict) else None


def _ours(table: dict) -> dict[str, dict]:
    """``{dataset: block}`` of our own results (``<dataset>/ours`` blocks)."""
    return {k.removesuffix("/ours"): v for k, v in table.items() if k.endswith("/ours")}


def scores(metrics: dict) -> dict:
    """The scalar summary of the report's ``metrics`` (see the module docstring); numbers only."""
    out: dict[str, dict] = {"table1": {}, "table2": {}, "table3": {}, "modality_gap": {}}
    for d, block in _ours(metrics.get("table1", {})).items():
        row = {m: _mean(c) for m, c in (block.get("multi") or {}).items()}
        out["table1"][d] = {m: v for m, v in row.items() if v is not None}
    for d, block in _ours(metrics.get("table2", {})).items():
        rows = {m: {r: _mean(c) for r, c in cells.items() if _mean(c) is not None} for m, cells in block.items()}
        out["table2"][d] = {m: r for m, r in rows.items() if r}
    for d, block in _ours(metrics.get("table3", {})).items():
        row = {v: _mean(c) for v, c in (block.get("multi") or {}).items()}
        out["table3"][d] = {v: x for v, x in row.items() if x is not None}
    for d, block in _ours(metrics.get("modality_gap", {})).items():
        row = {m: _mean(c) for m, c in (block.get("mean") or {}).items()}
        out["modality_gap"][d] = {m: x for m, x in row.items() if x is not None}
    return {k: {d: v for d, v in t.items() if v} for k, t in out.items()}


def write_scores(metrics: dict, out_dir: str | Path) -> None:
    """Write ``scores.json`` beside the report's ``metrics.json``."""
    text = json.dumps(scores(metrics), sort_keys=True, indent=2, allow_nan=False) + "\n"
    (Path(out_dir) / "scores.json").write_text(text, encoding="utf-8")
