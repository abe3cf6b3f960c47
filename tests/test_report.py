"""The report end to end on synthetic results of exactly the training code's shape."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from mla import catalog, config, grid, real_paths
from mla.analysis.gap import gap_summary
from mla.analysis.tsne import analyse, save_npz
from mla.config import load
from mla.report.build import build_report

CONFIG = Path(__file__).resolve().parents[1] / "config" / "config.yaml"
NOISE = {0: -0.5, 1: 0.5}   # per-seed offset: std of two seeds = sqrt(0.5)


def make_cfg() -> dict:
    # The grid this test was written for (independent of the default config's method lists).
    return load(CONFIG, ["seeds=[0,1]", "analysis.tsne_points=20", "training.epochs=3",
                         "methods=[unimodal, concat, mla, mla_released]", "missing.methods=[concat, mla]",
                         "missing.rates=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]"])


def _accs(job: grid.Job, seed: int) -> tuple[dict, dict]:
    """(test accuracies, fusion) of one synthetic run: MLA beats concat, concat is lazy."""
    mods = catalog.dataset_info(job.dataset).modalities
    alone = {m: 60.0 + 5 * i for i, m in enumerate(mods)}
    e = NOISE[seed]
    if job.method == "unimodal":
        a = alone[job.modality] + e
        return {job.modality: a, "multi": a}, {}
    if job.phase == "missing":
        base = (80.0 if job.method == "mla" else 74.0) - 30 * job.missing_rate + e
        return {"multi": base, **{m: 50.0 + e for m in mods}}, {"dynamic": base, "uniform": base - 1}
    hgm = dict(job.options).get("hgm", True)
    if job.method == "mla_released":
        test = {m: alone[m] + e + 1 for m in mods}
        test["multi"] = 78.0 + e
        return test, {"dynamic": 78.0 + e, "fixed": 76.0 + e}
    if job.method == "concat":
        test = {m: alone[m] + e - (1 if i == len(mods) - 1 else 20) for i, m in enumerate(mods)}
        test["multi"] = 75.0 + e
        return test, {}
    test = {m: alone[m] + e + (2 if hgm else 0) for m in mods}
    dyn, uni = (85.0, 80.0) if hgm else (74.0, 70.0)
    test["multi"] = dyn + e
    return test, {"dynamic": dyn + e, "uniform": uni + e}


def write_results(cfg: dict, tweak: dict | None = None) -> None:
    """metrics.json + log.jsonl for every run of the grid; ``tweak[(job_id, seed)]`` patches test/fusion."""
    tweak = tweak or {}
    for job in grid.jobs(cfg):
        for run in job.runs:
            test, fusion = _accs(job, run.seed)
            patch = tweak.get((job.id, run.seed), {})
            test.update(patch.get("test", {}))
            fusion.update(patch.get("fusion", {}))
            mods = catalog.dataset_info(job.dataset).modalities
            rate = job.missing_rate
            m = {
                "job": job.id, "phase": job.phase, "dataset": job.dataset, "method": job.method,
                "tag": job.tag, "seed": run.seed, "modality": job.modality, "missing_rate": rate,
                "options": dict(job.options), "modalities": list(mods), "selection": "val",
                "selected_epoch": 2, "epochs": 3, "counts": {"train": 1800, "val": 200, "test": 500},
                "test": test, "val": {k: v - 1 for k, v in test.items()},
                # each rule at its own selected epoch; at the multi epoch the uniform rule scores 2 less,
                # so a Table 3 built from "fusion" instead of "fusion_selection" fails the asserts below
                "fusion": {f: v - (2 if f == "uniform" else 0) for f, v in fusion.items()},
                "fusion_selection": {f: {"epoch": 3, "val": v - 1, "test": v} for f, v in fusion.items()},
                "best_on_test": {"epoch": 3, "multi": test["multi"] + 1.5},
                "last_epoch": {k: v - 0.5 for k, v in test.items()},
                "missing": None if rate is None else {
                    "rate": rate, "masking": "released",
                    "realised": {"train": rate + 0.01, "val": rate, "test": rate - 0.01 * run.seed}},
                "provenance": {"git_commit": "abc123", "git_dirty": False, "lock_sha256": "f00d",
                               "versions": {"numpy": "2"}, "device": "cpu", "threads": 1},
            }
            d = Path(run.run_dir)
            d.mkdir(parents=True, exist_ok=True)
            (d / "metrics.json").write_text(json.dumps(m))
            log = [{"epoch": ep, "train_loss": 1.0 / ep, "val": {"multi": test["multi"] - 3 + ep},
                    "test": {"multi": test["multi"] - 3 + ep}} for ep in (1, 2, 3)]
            (d / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))


def write_embeddings(cfg: dict, per_seed: bool = True) -> None:
    """Synthetic encoder outputs of every seed's run, as ``mla analyze`` measures them: MLA's modality
    clouds lie further apart than concat's; the embeddings file is the analysis seed's. Without
    ``per_seed``, gap.json has the analysis seed's gap only (an analysis from before gap_per_seed)."""
    for d in cfg["analysis"]["datasets"]:
        out = Path(grid.analysis_dir(cfg, d))
        out.mkdir(parents=True, exist_ok=True)
        mods = catalog.dataset_info(d).modalities
        gaps: dict[str, dict[str, dict[str, float]]] = {}
        for method, sep in (("concat", 0.3), ("mla", 1.0)):
            for seed in cfg["seeds"]:
                rng = np.random.default_rng(len(d) + len(method) + 100 * seed)
                arrays = {"labels": np.arange(40) % 4}
                for i, m in enumerate(mods):
                    x = rng.normal(size=(40, 8)).astype(np.float32)
                    x[:, i] += 10 * sep
                    x[:, 7] += 10
                    arrays[f"features_{m}"] = x
                gaps.setdefault(method, {})[str(seed)] = gap_summary({m: arrays[f"features_{m}"] for m in mods})
                if seed == cfg["analysis"]["seed"]:
                    save_npz(out / f"embeddings_{method}.npz", arrays)
        analyse(cfg, d, str(out), gaps if per_seed else None)


@pytest.fixture(scope="module")
def base_tree(tmp_path_factory) -> Path:
    """Results and analyses of the whole grid, built once (t-SNE is the slow part)."""
    root = tmp_path_factory.mktemp("base")
    with contextlib.chdir(root):
        cfg = make_cfg()
        write_results(cfg)
        write_embeddings(cfg)
    return root


@pytest.fixture
def tree(base_tree, tmp_path, monkeypatch) -> dict:
    """A fresh copy of the base tree as the working directory; returns the config."""
    shutil.copytree(base_tree, tmp_path / "w")
    monkeypatch.chdir(tmp_path / "w")
    return make_cfg()


def _build(cfg: dict) -> tuple[Path, dict]:
    out = Path(grid.report_dir(cfg))
    build_report(cfg, str(out))
    return out, json.loads((out / "metrics.json").read_text())




def test_all_files_and_hand_computed_cell(tree):
    write_results(tree, {("train/builtin_av/mla", 0): {"test": {"multi": 80.0}},
                         ("train/builtin_av/mla", 1): {"test": {"multi": 83.0}}})
    out, metrics = _build(tree)
    assert sorted(str(p) for p in out.iterdir()) == sorted(grid.report_files(tree))
    assert {p.name for p in out.iterdir()} >= {"released.md", "selection.csv", "modality_gap.png"}
    # mean 81.5, sample std sqrt(((1.5)^2 + (1.5)^2) / 1) = 2.1213
    cell = metrics["table1"]["builtin_av/ours"]["multi"]["mla"]
    assert cell == {"mean": 81.5, "std": round(math.sqrt(4.5), 4), "n": 2}
    assert "| multi | — | not run | 75.00 ± 0.71 |" in (out / "table1.md").read_text()
    assert "81.50 ± 2.12" in (out / "table1.md").read_text()
    assert "81.50 ± 2.12" in (out / "report.html").read_text()


def test_released_table_shows_a_scored_authors_checkpoint(tree):
    """A dataset listed under released_checkpoints gets its `mla score-released` numbers in the
    released table's extra column; the others say 'not scored'; a listed score missing is an error."""
    cfg = config.apply_overrides(tree, ["released_checkpoints={builtin_ait: {path: authors.pth}}"])
    score_dir = Path(real_paths.released_scores_dir(grid.results_dir(cfg), "builtin_ait"))
    with pytest.raises(FileNotFoundError, match="released_checkpoints/builtin_ait/metrics.json"):
        _build(cfg)
    score_dir.mkdir(parents=True)
    (score_dir / "metrics.json").write_text(json.dumps({
        "test": {"multi": 71.25, "audio": 50.0, "image": 40.5, "text": 60.0},
        "fusion": {"dynamic": 71.25, "fixed": 70.0}, "test_count": 24,
        "checkpoint": {"source_sha256": "ab" * 32}, "inputs": {"mode": "released"}}))
    out, metrics = _build(cfg)
    block = metrics["released"]["builtin_ait/ours"]
    assert block["multi"]["authors' checkpoint"] == {"mean": 71.25, "std": None, "n": 1}
    assert block["image"]["authors' checkpoint"]["mean"] == 40.5
    assert block["multi: fixed weights ([C] no DF)"]["authors' checkpoint"]["mean"] == 70.0
    assert block["multi: per-example entropy (paper DF)"]["authors' checkpoint"] is None
    assert metrics["released"]["builtin_av/ours"]["multi"]["authors' checkpoint"] is None
    text = (out / "released.md").read_text()
    assert "| multi | 85.00 ± 0.71 | 78.00 ± 0.71 | +7.00 | 71.25 |" in text
    assert "not scored" in text and "ab" * 32 in text


def test_released_table_compares_the_two_forms(tree):
    out, metrics = _build(tree)
    block = metrics["released"]["builtin_ait/ours"]
    assert block["multi"]["mla"]["mean"] == 85.0 and block["multi"]["mla_released"]["mean"] == 78.0
    assert block["multi"]["mla − mla_released"] == 7.0
    assert block["audio"]["mla − mla_released"] == 1.0          # (60 + 2) - (60 + 1)
    assert block["multi: batch-level entropy ([C] DF)"]["mla_released"]["mean"] == 78.0
    assert block["multi: fixed weights ([C] no DF)"]["mla_released"]["mean"] == 76.0
    assert block["multi: uniform mean (no DF)"]["mla"]["mean"] == 80.0
    assert block["multi: released protocol (best on test)"]["mla_released"]["mean"] == 79.5
    assert block["multi: fixed weights ([C] no DF)"]["mla"] is None   # not a variant of the paper form
    assert "| multi | 85.00 ± 0.71 | 78.00 ± 0.71 | +7.00 |" in (out / "released.md").read_text()


def test_not_reproduced_and_paper_blocks(tree):
    out, metrics = _build(tree)
    t1 = (out / "table1.md").read_text()
    assert "## Paper (CVPR 2024), CREMA-D — reference only, different data" in t1
    assert "## Paper (CVPR 2024), UPMC Food-101 — reference only, different data" in t1
    assert "79.70" in t1 and "64.91" in t1 and "69.60" in t1
    csv = (out / "table1.csv").read_text()
    for m in ("sum", "late_fusion", "film", "bigated", "ogm_ge", "qmf"):
        assert f"builtin_av/ours,multi,{m},not run" in csv
    assert metrics["table1"]["builtin_av/paper"]["video"]["mla"] == 64.91
    t2 = (out / "table2.md").read_text()
    assert "75.07" in t2 and "| qmf | not run |" in t2
    # the paper's twelve rows, in its order, ours beside the paper's
    paper_rows = ["late_fusion", "qmf", "cca", "dcca", "dccae", "ae", "cra", "mmin", "if_mmin", "cpm_net", "tate", "mla"]
    ours, paper = t2.split("## Paper", 1)
    for block in (ours, paper):
        rows = [line.split("|")[1].strip() for line in block.splitlines() if line.startswith("| ")]
        assert [r for r in rows if r in paper_rows] == paper_rows, rows
    assert set(metrics["table2"]["builtin_ait/ours"]) >= set(paper_rows)
    assert metrics["table2"]["builtin_ait/realised"]["train"]["30%"] == pytest.approx(31.0)
    assert metrics["table2"]["builtin_ait/realised"]["test"]["30%"] == pytest.approx(29.5)
    t3 = (out / "table3.md").read_text()
    assert "72.79" in t3
    # HGM off / DF off multi = the nohgm run's uniform fusion; HGM on / DF on = the mla run's dynamic.
    assert metrics["table3"]["builtin_av/ours"]["multi"]["none"]["mean"] == 70.0
    assert metrics["table3"]["builtin_av/ours"]["multi"]["hgm_df"]["mean"] == 85.0
    assert metrics["selection"]["builtin_av/ours"]["mla"]["best_on_test - selected"]["mean"] == 1.5
    assert metrics["modality_gap"]["builtin_av/paper"]["text-vision"]["mla"] == 0.94
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "abc123" in html and "f00d" in html


def test_claims_hold_then_flip(tree):
    _, metrics = _build(tree)
    claims = metrics["claims"]
    assert claims["a_laziness"]["items"]["builtin_av / audio"]["verdict"] == "holds"
    assert claims["b_mla_multi"]["items"]["builtin_av: mla vs concat"]["verdict"] == "holds"
    assert claims["c_weak_modality"]["summary"].startswith("holds")
    assert claims["d_ablation"]["summary"] == "holds (12 hold of 12 comparisons)"
    # the gap of every seed's run: MLA's clouds lie far further apart in both seeds
    assert claims["e_modality_gap"]["summary"] == "holds (3 hold of 3 comparisons)"
    assert claims["f_missing"]["summary"] == "holds (7 hold of 7 comparisons)"
    # Welch with 2 + 2 seeds of std sqrt(0.5): half-width t(0.975, 2) * sqrt(0.5/2 + 0.5/2)
    item = claims["b_mla_multi"]["items"]["builtin_av: mla vs concat"]
    assert item["half_width"] == pytest.approx(4.302653 * math.sqrt(0.5), abs=1e-4)
    assert item["ci_low"] == pytest.approx(10.0 - item["half_width"], abs=1e-4)

    # concat's audio on builtin_av better than alone; MLA's multi on builtin_it below concat's
    tweak = {}
    for s in (0, 1):
        tweak[("train/builtin_av/concat", s)] = {"test": {"audio": 70.0 + NOISE[s]}}
        tweak[("train/builtin_it/mla", s)] = {"test": {"multi": 70.0 + NOISE[s]}}
    write_results(tree, tweak)
    out, metrics = _build(tree)
    claims = metrics["claims"]
    assert claims["a_laziness"]["items"]["builtin_av / audio"]["verdict"] == "contradicted"
    assert claims["b_mla_multi"]["items"]["builtin_it: mla vs concat"]["verdict"] == "contradicted"
    assert claims["b_mla_multi"]["verdict"] == "contradicted"
    assert claims["b_mla_multi"]["headline"]["weakest"] == "builtin_it: mla vs mla_released"  # -8, the weakest
    text = (out / "claims.md").read_text()
    assert "- builtin_av / audio: **contradicted** — alone 60.00 ± 0.71 vs concat 70.00 ± 0.71: difference -10.00" in text


def test_within_noise_is_inconclusive(tree):
    # difference 0.5, well inside the interval: neither holds nor contradicted
    write_results(tree, {("train/builtin_av/mla", 0): {"test": {"multi": 73.0}},
                         ("train/builtin_av/mla", 1): {"test": {"multi": 78.0}}})
    _, metrics = _build(tree)
    item = metrics["claims"]["b_mla_multi"]["items"]["builtin_av: mla vs concat"]
    assert item["verdict"] == "inconclusive" and item["diff"] == 0.5
    assert item["ci_low"] < 0 < item["ci_high"]


def test_missing_jobs_make_claims_not_evaluated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # no concat anywhere, one seed, no analysis
    cfg = load(CONFIG, ["seeds=[0]", "methods=[unimodal,mla]", "analysis.datasets=[]",
                        "analysis.methods=[unimodal,mla]", "missing.methods=[mla]"])
    write_results(cfg)
    out, metrics = _build(cfg)
    claims = metrics["claims"]
    assert claims["a_laziness"]["summary"] == "not evaluated"
    assert claims["b_mla_multi"]["items"]["builtin_av: mla vs concat"]["verdict"] == "not evaluated"
    assert claims["e_modality_gap"]["summary"] == "not evaluated"
    assert claims["d_ablation"]["summary"] == "inconclusive (12 inconclusive of 12 comparisons)"
    assert "one seed: no interval" in (out / "claims.md").read_text()
    assert "| multi | — | not run | not run |" in (out / "table1.md").read_text()
    assert metrics["table1"]["builtin_av/ours"]["multi"]["mla"]["std"] is None
    # The report's files are the same for every config (dvc.yaml lists them): "not run" instead.
    assert sorted(str(p) for p in out.iterdir()) == sorted(grid.report_files(cfg))
    assert "| multi | 84.50 | not run | — |" in (out / "released.md").read_text()


def test_rebuild_is_byte_identical(tree):
    out, _ = _build(tree)
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    gap_dir = Path(grid.analysis_dir(tree, "builtin_av"))
    analysis_first = {p.name: p.read_bytes() for p in gap_dir.iterdir()}
    write_embeddings(tree)
    assert {p.name: p.read_bytes() for p in gap_dir.iterdir()} == analysis_first
    _build(tree)
    second = {p.name: p.read_bytes() for p in out.iterdir()}
    assert first.keys() == second.keys()
    for name in first:
        assert first[name] == second[name], name
    assert not re.search(r"20\d\d-\d\d-\d\d", (out / "report.html").read_text()[:200000].split("base64,")[0])


def test_gap_json(tree):
    doc = json.loads((Path(grid.analysis_dir(tree, "builtin_ait")) / "gap.json").read_text())
    assert set(doc["gap"]) == {"concat", "mla"}
    assert list(doc["gap"]["mla"]) == ["audio-image", "audio-text", "image-text", "mean"]
    assert doc["gap"]["mla"]["mean"] > doc["gap"]["concat"]["mean"]
    # every seed's gap; the analysis seed's is the one the embeddings (and the t-SNE) show
    assert set(doc["gap_per_seed"]["mla"]) == {"0", "1"}
    assert doc["gap_per_seed"]["mla"][str(doc["seed"])] == doc["gap"]["mla"]


def test_gap_table_and_claim_are_over_seeds(tree):
    """The gap table's cells are mean ± std over the seeds' gaps (hand-computed from gap.json), and
    claim (e) compares them with Welch's interval; an analysis with one seed's gap decides nothing."""
    _, metrics = _build(tree)
    doc = json.loads((Path(grid.analysis_dir(tree, "builtin_av")) / "gap.json").read_text())
    for method in ("concat", "mla"):
        a, b = (doc["gap_per_seed"][method][s]["mean"] for s in ("0", "1"))
        cell = metrics["modality_gap"]["builtin_av/ours"]["mean"][method]
        assert cell == {"mean": pytest.approx(round((a + b) / 2, 4)), "std": pytest.approx(round(abs(a - b) / math.sqrt(2), 4)),
                        "n": 2}
    item = metrics["claims"]["e_modality_gap"]["items"]["builtin_av"]
    assert item["verdict"] == "holds"
    write_embeddings(tree, per_seed=False)
    _, metrics = _build(tree)
    assert metrics["claims"]["e_modality_gap"]["summary"] == "inconclusive (3 inconclusive of 3 comparisons)"
    assert metrics["modality_gap"]["builtin_av/ours"]["mean"]["mla"]["n"] == 1
    assert "centroids" in doc["definition"]


def test_missing_metrics_file_is_named(tree):
    path = Path(grid.job_by_id(tree, "ablation/builtin_it/mla-nohgm").runs[1].run_dir) / "metrics.json"
    path.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        _build(tree)


def test_metrics_of_wrong_run_is_an_error(tree):
    src = Path(grid.job_by_id(tree, "train/builtin_av/mla").runs[0].run_dir) / "metrics.json"
    dst = Path(grid.job_by_id(tree, "train/builtin_av/concat").runs[0].run_dir) / "metrics.json"
    dst.write_text(src.read_text())
    with pytest.raises(ValueError, match="expected 'train/builtin_av/concat' seed 0"):
        _build(tree)


def test_real_dataset_gets_difference_block(tree, monkeypatch):
    # Pretend builtin_av were the real CREMA-D: differences to the paper, flagged beyond 1.5 points.
    real = dataclasses.replace(catalog.DATASETS["builtin_av"], family="real")
    monkeypatch.setitem(catalog.DATASETS, "builtin_av", real)
    out, metrics = _build(tree)
    assert metrics["table1"]["builtin_av/diff"]["multi"]["mla"] == pytest.approx(85.0 - 79.70)
    t1 = (out / "table1.md").read_text()
    assert "## Paper (CVPR 2024), CREMA-D — the paper's numbers on the same dataset" in t1
    assert "## builtin_av: ours − paper (* = beyond ±1.5 points)" in t1
    assert "| multi | — | +13.44 * |" in t1
    assert "builtin_it/diff" not in metrics["table1"]
