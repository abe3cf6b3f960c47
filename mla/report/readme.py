"""The README's numbers, generated: never typed by hand, so never stale.

Three blocks of ``README.md`` lie between ``<!-- begin generated: KEY -->`` and ``<!-- end generated: KEY -->``:

- ``results``: the report's ``readme.md`` (written by the report rule beside ``claims.md``): the
  claims' scoreboard and Table 1's fused accuracies of the run;
- ``calibration``: ``bench/results/calibration.json``, written by ``bench/calibration_criteria.py
  --from-results --write`` on that run (the built-in benchmark's three calibration criteria);
- ``timing``: ``bench/results/pipeline.json``, written by ``bench/pipeline.py`` (job count, wall
  time, where the time goes).

The sources are committed (``reports/builtin/readme.md`` is a DVC output with ``cache: false``, the
way DVC keeps small results in git), ``python -m mla readme`` copies them into the README, and
``tests/test_readme.py`` fails when the README and its sources differ.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

BENCH_JSON = "bench/results/pipeline.json"
CALIBRATION_JSON = "bench/results/calibration.json"


def marker(kind: str, key: str) -> str:
    return f"<!-- {kind} generated: {key} -->"


def results_md(cfg: dict, claims_table: str, noise_line: str, table1: dict) -> str:
    """The ``results`` block: the scoreboard (``claims_table``, the table of ``claims.md``), the seed
    noise and Table 1's fused (multi) accuracy, mean ± std over seeds, methods by datasets."""
    datasets = [d for d in cfg["datasets"] if f"{d}/ours" in table1]
    rows = {}
    for d in datasets:
        for method, cell in (table1[f"{d}/ours"].get("multi") or {}).items():
            if isinstance(cell, dict):
                std = f" ± {cell['std']:.2f}" if cell.get("std") is not None else ""
                rows.setdefault(method, {})[d] = f"{cell['mean']:.2f}{std}"
    order = [m for m in cfg["methods"] if m in rows] + sorted(set(rows) - set(cfg["methods"]))
    lines = [f"Our numbers on the built-in benchmark (`{cfg['name']}`: {len(cfg['seeds'])} seeds, "
             f"{cfg['training']['epochs']} epochs), from `reports/{cfg['name']}/`. The paper's claims, "
             "each comparison with its 95 % Welch interval (every comparison: `claims.md`):", "",
             claims_table.strip(), "", noise_line, "",
             "Table 1, fused accuracy (%, mean ± std over seeds; the paper's numbers: `table1.md`):", "",
             "| method | " + " | ".join(f"`{d}`" for d in datasets) + " |",
             "| --- |" + " --- |" * len(datasets)]
    lines += [f"| {m} | " + " | ".join(rows[m].get(d, "—") for d in datasets) + " |" for m in order]
    return "\n".join(lines) + "\n"


def timing_md(bench: dict) -> str:
    """The ``timing`` block from ``bench/pipeline.py``'s JSON."""
    mins, secs = divmod(round(bench["wall_s"]), 60)
    tj = bench["training_jobs"]
    busy = sum(v for k, v in tj.items() if k.endswith("_s"))
    share = lambda k: f"{100 * tj[k] / busy:.0f} %"  # noqa: E731
    return (f"Measured by `bench/pipeline.py` (a fresh clone, `snakemake --cores {bench['cores']} all`) on a "
            f"{bench['cpus']}-core machine without a GPU at commit `{bench['commit']}`: **{bench['jobs']} jobs in "
            f"{mins} min {secs:02d} s**, at most {bench['peak_single_process_mib'] / 1024:.1f} GB per process. "
            f"Inside the training jobs, {share('train_s')} of the time trains, {share('eval_s')} scores validation "
            f"and test every epoch, {share('startup_s')} starts Python and PyTorch and {share('setup_s')} sets runs "
            "up; `docs/benchmark.md` has the breakdown.\n")


def pass_fail(ok: bool) -> str:
    """How a calibration criterion's outcome is printed (here and by bench/calibration_criteria.py)."""
    return "PASS" if ok else "FAIL"


def calibration_md(calib: dict) -> str:
    """The ``calibration`` block from ``bench/calibration_criteria.py --write``'s JSON: each criterion's
    verdict with the figures behind it (per dataset the lazy modality with the largest gap)."""
    t, s = calib["thresholds"], calib["stability"]
    lazy = []
    for d, v in calib["lazy"].items():
        found = [r for r in v["modalities"] if r.get("lazy")]
        if found:
            r = max(found, key=lambda r: r["gap"])
            lazy.append(f"`{d}` {r['modality']} {r['alone_mean']:.1f} alone, {r['joint_mean']:.1f} under concat")
        else:
            lazy.append(f"`{d}` no lazy modality")
    judged = [c for c in calib["cells"] if c["converged"] is not None]
    n_conv = sum(bool(c["converged"]) for c in judged)
    widest = max(judged, key=lambda c: c["range"])
    return "\n".join([
        f"Calibration of the built-in benchmark, measured on this run (`bench/calibration_criteria.py --from-results "
        f"--write` at commit `{calib['commit']}`, {len(calib['seeds'])} seeds; the criteria, and the settings rejected "
        f"on the way: [docs/benchmark.md](docs/benchmark.md#calibration)):", "",
        f"- **lazy** ({pass_fail(all(v['pass'] for v in calib['lazy'].values()))}): on every dataset some modality read "
        f"from concat is at least {t['lazy_gap']:g} points and {t['lazy_sigmas']:g} pooled standard deviations below "
        f"the same encoder trained alone: {'; '.join(lazy)};",
        f"- **converged** ({pass_fail(n_conv == len(judged))}, {n_conv} of {len(judged)} cells): the seed-mean "
        f"validation accuracy moves at most {t['converged_range']:g} points over the last {calib['last_quarter']} of "
        f"{calib['epochs']} epochs (the most: {widest['range']:.2f}, {widest['cell']} on `{widest['dataset']}`);",
        f"- **stable** ({pass_fail(s['pass'])}): over the {s['cells']} cells (every method and each modality alone) the "
        f"median seed std is {s['median_std']:.2f} points (at most {t['stable_median']:g}) and the largest "
        f"{s['max_std']:.2f} ({s['max_std_cell']}; at most {t['stable_max']:g}), so "
        f"{len(calib['seeds'])} seeds call a difference of {s['smallest_significant']:.2f} points significant at the "
        f"median (at most {t['significant_max']:g}).", ""])


def replace_block(text: str, key: str, body: str) -> str:
    """``text`` with the generated block ``key`` replaced by ``body``; an error if the markers are missing."""
    begin, end = marker("begin", key), marker("end", key)
    pattern = re.compile(re.escape(begin) + r"\n.*?" + re.escape(end), flags=re.S)
    if len(pattern.findall(text)) != 1:
        raise ValueError(f"README.md: expected one '{begin}' ... '{end}' block (add the two marker lines where "
                         f"the generated {key} go)")
    return pattern.sub(lambda _: f"{begin}\n{body.rstrip()}\n{end}", text)


def render_readme(root: str | Path, name: str = "builtin") -> str:
    """README.md with its generated blocks refreshed from their committed sources under ``root``."""
    root = Path(root)
    sources = {"results": root / "reports" / name / "readme.md", "calibration": root / CALIBRATION_JSON,
               "timing": root / BENCH_JSON}
    hints = {"results": "run the pipeline (snakemake --cores 8 all)",
             "calibration": "run uv run python bench/calibration_criteria.py --from-results --write after the pipeline",
             "timing": "run uv run python bench/pipeline.py --write"}
    for key, path in sources.items():
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing, the README's {key} come from it; {hints[key]}")
    read = lambda key: sources[key].read_text(encoding="utf-8")  # noqa: E731
    text = (root / "README.md").read_text(encoding="utf-8")
    text = replace_block(text, "results", read("results"))
    text = replace_block(text, "calibration", calibration_md(json.loads(read("calibration"))))
    return replace_block(text, "timing", timing_md(json.loads(read("timing"))))
