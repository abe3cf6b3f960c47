"""report.html: one self-contained page (figures embedded as base64), no timestamps or host names."""
from __future__ import annotations

import base64
import html as _html
from pathlib import Path

from mla.report.claims import Claim, claims_html, scoreboard_html
from mla.report.tables import STD_NOTE, Table, html_page, table_html


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<p><img alt="{_html.escape(alt)}" style="max-width:100%" src="data:image/png;base64,{data}"></p>'


def _provenance(cfg: dict, prov: dict, config_sha: str) -> str:
    esc = _html.escape
    rows = [
        ("config", f"{cfg['name']} (sha256 of the resolved config {config_sha})"),
        ("seeds", ", ".join(str(s) for s in cfg["seeds"])),
        ("validation split", f"val_fraction {cfg['val_fraction']}, split_seed {cfg['split_seed']}; "
                             f"selection used by the runs: {', '.join(prov['selection'])}"),
        ("statistics", STD_NOTE),
        ("runs", str(prov["n_runs"])),
        ("git commit(s)", ", ".join(prov["git_commits"]) or "unknown"),
        ("runs from a dirty tree", str(prov["git_dirty_runs"])),
        ("lock file sha256", ", ".join(prov["lock_sha256"]) or "unknown"),
        ("device(s)", ", ".join(prov["devices"]) or "unknown"),
        ("torch threads", ", ".join(prov["threads"]) or "unknown"),
        ("library versions (first run)", ", ".join(f"{k} {v}" for k, v in sorted(prov["versions"].items()))
         or "unknown"),
    ]
    body = "\n".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    return f'<h2>Methods and provenance</h2>\n<table class="tbl">\n{body}\n</table>'


def report_html(cfg: dict, tables: list[Table], claims: list[Claim], noise: dict, figures: dict[str, Path],
                prov: dict, config_sha: str) -> str:
    """The whole report page."""
    intro = (
        f"<h1>MLA reproduction — {_html.escape(cfg['name'])}</h1>\n"
        '<p class="caption">Reproduction of Zhang et al., "Multimodal Representation Learning by '
        'Alternating Unimodal Adaptation" (CVPR 2024). Grey blocks hold the paper\'s printed numbers; on '
        "generated (built-in) data they are reference only: the data differ, so no difference to them is "
        "computed. Claims are checked on our numbers only.</p>"
    )
    by_name = {t.name: t for t in tables}
    parts = [intro, scoreboard_html(claims, noise)]
    for name, alt in (("table1", "Table 1 as grouped bars"), ("table2", "Table 2 as curves against the missing rate"),
                      ("table3", "Table 3 as bars")):
        if name in figures:
            parts.append(_img(figures[name], alt))
    for name in ("table1", "table2", "table3", "selection"):
        if name in by_name:
            parts.append(table_html(by_name[name]))
    if "modality_gap" in by_name:
        parts.append(table_html(by_name["modality_gap"]))
    if "modality_gap" in figures:
        parts.append(_img(figures["modality_gap"], "t-SNE of concat and MLA features"))
    if "training_curves" in figures:
        parts += ["<h2>Training curves</h2>", _img(figures["training_curves"], "validation accuracy per epoch")]
    parts.append(claims_html(claims))
    parts.append(_provenance(cfg, prov, config_sha))
    return html_page(f"MLA reproduction — {cfg['name']}", "\n".join(parts))
