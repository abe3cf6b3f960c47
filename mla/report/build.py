"""``build_report(cfg, out_dir)``: every report file from the grid's results, deterministically."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mla import config as mla_config
from mla.report import claims as claims_mod
from mla.report import figures, result_figures, tables
from mla.report.collect import collect, load_gaps, load_released_scores, provenance
from mla.report.html import report_html
from mla.report.readme import results_md
from mla.report.scores import write_scores


def build_report(cfg: dict, out_dir: str) -> None:
    """Write every file of ``grid.report_files`` into ``out_dir`` (tables as .md/.csv/.html, claims.md,
    figures, metrics.json, report.html). A result file missing for a job of the grid is an error."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results, gaps, paper = collect(cfg), load_gaps(cfg), tables.load_paper()

    tabs = [tables.table1(cfg, results, paper), tables.table2(cfg, results, paper),
            tables.table3(cfg, results, paper), tables.selection_table(cfg, results),
            tables.released_table(cfg, results, load_released_scores(cfg))]
    tabs.append(tables.gap_table(cfg, gaps, paper))
    for t in tabs:
        tables.write_table(t, out)

    claims = claims_mod.evaluate(cfg, results, gaps, paper)
    noise = claims_mod.noise(cfg, results)
    (out / "claims.md").write_text(claims_mod.claims_md(claims, noise), encoding="utf-8")

    by_name = {t.name: t for t in tabs}
    styles = result_figures.style_of(result_figures.method_order(by_name))
    figs = {"table1": result_figures.table1_figure(by_name["table1"], styles, out / "table1.png"),
            "table2": result_figures.table2_figure(by_name["table2"], styles, cfg["missing"]["masking"],
                                                   out / "table2.png"),
            "table3": result_figures.table3_figure(by_name["table3"], out / "table3.png"),
            "training_curves": figures.training_curves_figure(cfg, results, styles, out / "training_curves.png"),
            "modality_gap": figures.modality_gap_figure(cfg, gaps, out / "modality_gap.png")}

    config_sha = hashlib.sha256(mla_config.dump(cfg).encode()).hexdigest()
    prov = provenance(results)
    metrics = {
        "config": cfg["name"],
        "config_sha256": config_sha,
        "std": "sample standard deviation over seeds (ddof=1); null for a single seed",
        **{t.name: t.values() for t in tabs},
        "claims": claims_mod.claims_values(claims, noise),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, sort_keys=True, indent=2, allow_nan=False) + "\n",
                                      encoding="utf-8")
    write_scores(metrics, out)  # the scalar summary DVC shows (dvc.yaml metrics)
    readme = results_md(cfg, claims_mod.scoreboard_md(claims), claims_mod.noise_line(noise), metrics["table1"])
    (out / "readme.md").write_text(readme, encoding="utf-8")  # README.md's generated results (python -m mla readme)
    (out / "report.html").write_text(report_html(cfg, tabs, claims, noise, figs, prov, config_sha), encoding="utf-8")
