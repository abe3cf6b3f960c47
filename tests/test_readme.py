"""README.md's numbers are generated from committed sources (mla/report/readme.py), never typed."""
from __future__ import annotations

from pathlib import Path

import pytest

from mla.report import readme

ROOT = Path(__file__).resolve().parents[1]


def test_readme_blocks_match_their_sources():
    """README.md == its generated blocks refreshed from reports/builtin/readme.md (the pipeline's) and
    bench/results/pipeline.json (bench/pipeline.py's): a stale number fails here."""
    assert readme.render_readme(ROOT) == (ROOT / "README.md").read_text(encoding="utf-8"), (
        "README.md is stale: run `uv run python -m mla readme`")


def test_results_md_table1_is_methods_by_datasets():
    cfg = {"name": "builtin", "datasets": ["d1", "d2"], "methods": ["concat", "mla"], "seeds": [0, 1],
           "training": {"epochs": 3}}
    table1 = {"d1/ours": {"multi": {"concat": {"mean": 80.0, "std": 1.234, "n": 2}, "mla": {"mean": 81.5, "std": None, "n": 1},
                                    "film": None}},
              "d2/ours": {"multi": {"mla": {"mean": 70.0, "std": 0.5, "n": 2}}},
              "d1/paper": {"multi": {"concat": {"mean": 1.0}}}}
    text = readme.results_md(cfg, "| claim |\n| --- |", "Seed noise: x.", table1)
    assert "(`builtin`: 2 seeds, 3 epochs)" in text
    assert "| method | `d1` | `d2` |\n| --- | --- | --- |\n| concat | 80.00 ± 1.23 | — |\n| mla | 81.50 | 70.00 ± 0.50 |\n" in text
    assert "film" not in text and "| claim |\n| --- |\n\nSeed noise: x." in text


def test_timing_md_shares_of_the_training_jobs():
    bench = {"wall_s": 754.4, "cores": "8", "cpus": 2, "commit": "abc1234", "jobs": 93,
             "peak_single_process_mib": 921.6,
             "training_jobs": {"jobs": 85, "startup_s": 100.0, "load_s": 0.0, "setup_s": 50.0, "train_s": 600.0,
                               "eval_s": 250.0, "save_s": 0.0, "rest_s": 0.0}}
    text = readme.timing_md(bench)
    assert "**93 jobs in 12 min 34 s**" in text and "at commit `abc1234`" in text and "0.9 GB" in text
    assert "60 % of the time trains, 25 % scores" in text and "10 % starts Python" in text and "5 % sets runs" in text


def test_replace_block_touches_only_its_block():
    text = "a\n<!-- begin generated: x -->\nold\n<!-- end generated: x -->\nb\n"
    assert readme.replace_block(text, "x", "new\n") == "a\n<!-- begin generated: x -->\nnew\n<!-- end generated: x -->\nb\n"
    with pytest.raises(ValueError, match="begin generated: y"):
        readme.replace_block(text, "y", "z")
