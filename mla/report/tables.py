"""Tables 1-3 and the selection table as display DataFrames, plus md/csv/html writers.

Each table is a list of blocks: our numbers per dataset, and beside them the paper's numbers in a
block labelled "reference only" (the built-in data differ from the paper's, so no difference is
computed for them; for a real dataset a difference block with a ±1.5-point flag is added).
"""
from __future__ import annotations

import html as _html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from mla import catalog
from mla.report.collect import JobResult, Stat, gap_stats, stat

NOT_REPRODUCED = "not reproduced"   # a method of the paper this pipeline does not implement
NOT_RUN = "not run"                 # implemented, but no job for this dataset (modality count)
NOT_EVALUATED = "not evaluated"     # the job that would give the number is not in the grid
NA = "—"                            # the cell has no meaning (e.g. "alone" x multi)
FLAG_POINTS = 1.5                   # our choice: flag real-data cells this far from the paper (docs/paper-grid.md)

PAPER_NAMES = {
    "cremad": "CREMA-D",
    "ks": "Kinetics-Sounds",
    "food101": "UPMC Food-101",
    "mvsa": "MVSA-Single",
    "iemocap": "IEMOCAP",
}
# Our modality names -> the paper's row names (identical; kept explicit for other datasets).
PAPER_ROWS = {"audio": "audio", "video": "video", "image": "image", "text": "text", "multi": "multi"}
ABLATION_COLS = ("none", "df", "hgm", "hgm_df")   # (HGM, DF) = (off,off), (off,on), (on,off), (on,on)
STD_NOTE = "mean ± sample standard deviation (ddof=1) over seeds; a single seed shows the mean alone"


@dataclass(frozen=True)
class Delta:
    """A signed difference in points, shown as ``+1.23``."""

    value: float


@dataclass
class Block:
    """One sub-table; blocks sharing a ``group`` are shown side by side in HTML."""

    key: str
    title: str
    frame: pd.DataFrame
    values: dict
    group: str = ""
    note: str = ""


@dataclass
class Table:
    name: str
    title: str
    caption: str
    blocks: list[Block] = field(default_factory=list)

    def values(self) -> dict:
        return {b.key: b.values for b in self.blocks}


def load_paper() -> dict:
    """The paper's numbers (``mla/paper_tables.yaml``)."""
    return yaml.safe_load((Path(catalog.__file__).with_name("paper_tables.yaml")).read_text())


def paper_title(paper_key: str, real: bool) -> str:
    name = PAPER_NAMES.get(paper_key, paper_key)
    if real:
        return f"Paper (CVPR 2024), {name} — the paper's numbers on the same dataset"
    return f"Paper (CVPR 2024), {name} — reference only, different data"


def find_job(results: dict[str, JobResult], phase: str, dataset: str, method: str,
             modality: str | None = None, rate: float | None = None) -> JobResult | None:
    """The job of the grid with these attributes, or None."""
    for r in results.values():
        j = r.job
        if (j.phase, j.dataset, j.method, j.modality) == (phase, dataset, method, modality) and (
            rate is None or (j.missing_rate is not None and abs(j.missing_rate - rate) < 1e-9)
        ):
            return r
    return None


def _block(key: str, title: str, cells: dict[str, dict[str, object]], rows: list[str], cols: list[str],
           group: str = "", note: str = "") -> Block:
    """A block from ``cells[row][col]``: a Stat, a Delta, a paper float, a string, or None (-> NA)."""
    text, values = {}, {}
    for r in rows:
        text[r], values[r] = {}, {}
        for c in cols:
            v = cells.get(r, {}).get(c)
            if isinstance(v, Stat):
                text[r][c], values[r][c] = v.fmt(), v.as_dict()
            elif isinstance(v, Delta):
                text[r][c], values[r][c] = f"{v.value:+.2f}", round(v.value, 4)
            elif isinstance(v, (int, float)):
                text[r][c], values[r][c] = f"{v:.2f}", round(float(v), 4)
            else:
                text[r][c], values[r][c] = (v or NA), None
    frame = pd.DataFrame([[text[r][c] for c in cols] for r in rows], index=rows, columns=cols)
    frame.index.name = "row"
    return Block(key, title, frame, values, group, note)


def _diff_block(key: str, ours: dict, paper: dict, rows: list[str], cols: list[str], group: str) -> Block:
    """Ours − paper per cell, flagged ``*`` beyond ±FLAG_POINTS (real datasets only)."""
    cells: dict[str, dict[str, object]] = {}
    for r in rows:
        cells[r] = {}
        for c in cols:
            o, p = ours.get(r, {}).get(c), paper.get(r, {}).get(c)
            if isinstance(o, Stat) and isinstance(p, (int, float)):
                d = o.mean - p
                cells[r][c] = f"{d:+.2f}{' *' if abs(d) > FLAG_POINTS else ''}"
    b = _block(key, f"{group}: ours − paper (* = beyond ±{FLAG_POINTS} points)", cells, rows, cols, group)
    b.values = {r: {c: (None if cells[r].get(c) is None else float(cells[r][c].rstrip(" *"))) for c in cols}
                for r in rows}
    return b


def selection_note(results: dict[str, JobResult]) -> str:
    sel = sorted({str(m.get("selection")) for r in results.values() for m in r.metrics})
    if sel == ["val"]:
        return "Checkpoints selected on the validation split."
    if sel == ["test"]:
        return ("Checkpoints selected on the TEST set (val_fraction = 0, the released code's protocol): "
                "these numbers are optimistic.")
    return f"Checkpoint selection differs between runs ({', '.join(sel)}); see the selection table."


def table1_methods(cfg: dict) -> list[str]:
    """Table 1 columns after "alone": the paper's methods in order, then other implemented ones."""
    extra = [m for m in cfg["methods"] if m not in catalog.PAPER_METHODS and m != "unimodal"]
    return list(catalog.PAPER_METHODS) + extra


def table1(cfg: dict, results: dict[str, JobResult], paper: dict) -> Table:
    """Complete modalities: per dataset, modalities + multi x (alone, methods)."""
    methods = table1_methods(cfg)
    t = Table("table1", "Table 1 — complete modalities",
              f"Test accuracy (%), {STD_NOTE}. {selection_note(results)} Per-modality rows use each "
              "method's per-modality predictor as the paper defines it; 'alone' is the modality trained "
              f"alone (method unimodal). '{NOT_REPRODUCED}': a method of the paper not implemented here; "
              f"'{NOT_RUN}': implemented but not applicable to this dataset.")
    for d in cfg["datasets"]:
        info = catalog.dataset_info(d)
        rows = list(info.modalities) + ["multi"]
        cells: dict[str, dict[str, object]] = {r: {} for r in rows}
        for m in info.modalities:
            if "unimodal" not in cfg["methods"]:
                cells[m]["alone"] = NOT_REPRODUCED
            else:
                job = find_job(results, "train", d, "unimodal", modality=m)
                cells[m]["alone"] = job.acc("test", m) if job else NOT_RUN
        for meth in methods:
            job = find_job(results, "train", d, meth) if meth in cfg["methods"] else None
            for r in rows:
                if meth not in cfg["methods"]:  # implemented but left out of this config: not run
                    cells[r][meth] = NOT_RUN if meth in catalog.METHODS else NOT_REPRODUCED
                else:
                    cells[r][meth] = job.acc("test", r) if job else NOT_RUN
        t.blocks.append(_block(f"{d}/ours", f"{d} (ours)", cells, rows, ["alone"] + methods, group=d))
        ref = paper["table1"].get(info.paper_key)
        if ref:
            pcells = {r: dict(ref.get(PAPER_ROWS.get(r, r), {})) for r in rows}
            real = info.family != "builtin"
            t.blocks.append(_block(f"{d}/paper", paper_title(info.paper_key, real), pcells, rows,
                                   list(catalog.PAPER_METHODS), group=d))
            if real:
                t.blocks.append(_diff_block(f"{d}/diff", cells, pcells, rows, list(catalog.PAPER_METHODS), d))
    return t


def _rate_col(r: float) -> str:
    return f"{round(float(r) * 100)}%"


def table2(cfg: dict, results: dict[str, JobResult], paper: dict) -> Table:
    """Missing modalities: per dataset, methods x missing rates, test multi; realised fractions."""
    t = Table("table2", "Table 2 — missing modalities",
              f"Test accuracy (%) of the fused prediction with the same missing rate in training, "
              f"validation and test, {STD_NOTE}. {selection_note(results)} Masking: "
              f"{cfg['missing']['masking']}.")
    rates = list(cfg["missing"]["rates"])
    cols = [_rate_col(r) for r in rates]
    ref = paper.get("table2", {})
    for d in cfg["missing"]["datasets"]:
        info = catalog.dataset_info(d)
        # The paper's twelve rows in its order (ours where run, "not reproduced" where not), then any other method run.
        rows = list(ref) + [m for m in cfg["missing"]["methods"] if m not in ref]
        cells: dict[str, dict[str, object]] = {r: {} for r in rows}
        realised: dict[str, dict[str, object]] = {s: {} for s in ("train", "val", "test")}
        for rate, col in zip(rates, cols):
            runs = []
            for m in rows:
                if m not in cfg["missing"]["methods"]:
                    cells[m][col] = NOT_RUN if m in catalog.METHODS else NOT_REPRODUCED
                    continue
                job = find_job(results, "missing", d, m, rate=float(rate))
                cells[m][col] = job.acc("test", "multi") if job else NOT_RUN
                runs += list(job.metrics) if job else []
            for s in realised:
                vals = [((mt.get("missing") or {}).get("realised") or {}).get(s) for mt in runs]
                st = stat(100 * v for v in vals if v is not None)
                realised[s][col] = st.mean if st else None
        t.blocks.append(_block(f"{d}/ours", f"{d} (ours)", cells, rows, cols, group=d))
        t.blocks.append(_block(f"{d}/realised", f"{d}: realised missing fraction (%), mean over seeds and methods",
                               realised, list(realised), cols, group=d,
                               note="Fraction of (sample, modality) entries that are missing."))
        if ref:
            prates = sorted({float(k) for v in ref.values() for k in v})
            pcells = {m: {_rate_col(k): v for k, v in ref[m].items()} for m in ref}
            note = "" if info.paper_key == "iemocap" else "The paper reports Table 2 on IEMOCAP only."
            real = info.paper_key == "iemocap" and info.family != "builtin"
            t.blocks.append(_block(f"{d}/paper", paper_title("iemocap", real),
                                   pcells, list(ref), [_rate_col(r) for r in prates], group=d, note=note))
            if real:
                t.blocks.append(_diff_block(f"{d}/diff", cells, pcells, rows, cols, d))
    return t


def hgm_off_job(results: dict[str, JobResult], dataset: str) -> JobResult | None:
    """The ablation job of ``dataset`` trained with HGM off (first by tag)."""
    cands = [r for r in results.values()
             if r.job.phase == "ablation" and r.job.dataset == dataset and dict(r.job.options).get("hgm") is False]
    return sorted(cands, key=lambda r: r.job.tag)[0] if cands else None


def fusion_selected(metrics: dict, rule: str) -> float | None:
    """Test accuracy of fusion ``rule`` at the epoch selected on that rule's own validation accuracy
    (``metrics.json`` ``fusion_selection``); None for a run that did not record it."""
    return ((metrics.get("fusion_selection") or {}).get(rule) or {}).get("test")


def ablation_cells(results: dict[str, JobResult], dataset: str) -> dict[str, dict[str, object]]:
    """Table 3 cells of one dataset: ``cells[row][none|df|hgm|hgm_df]``."""
    rows = list(catalog.dataset_info(dataset).modalities) + ["multi"]
    jobs = {False: hgm_off_job(results, dataset), True: find_job(results, "train", dataset, "mla")}
    cells: dict[str, dict[str, object]] = {r: {} for r in rows}
    for col in ABLATION_COLS:
        job, df = jobs[col.startswith("hgm")], col.endswith("df")
        for r in rows:
            if job is None:
                cells[r][col] = NOT_EVALUATED
            elif r == "multi":   # DF is test-time only: the same model scored with each fusion rule,
                rule = "dynamic" if df else "uniform"   # each at the epoch selected on its own validation
                cells[r][col] = job.stat(lambda m: fusion_selected(m, rule))
            else:
                cells[r][col] = job.acc("test", r)
    return cells


def table3(cfg: dict, results: dict[str, JobResult], paper: dict) -> Table:
    """Ablation: HGM x DF of MLA, per dataset."""
    t = Table("table3", "Table 3 — ablation of HGM and DF (MLA)",
              f"Test accuracy (%), {STD_NOTE}. HGM on: the train phase's mla runs; HGM off: the ablation "
              "runs with hgm false. DF on/off: the same trained model scored with dynamic (entropy) or "
              "uniform fusion, each at the epoch selected on its own validation accuracy; DF changes only "
              f"the multi row. {selection_note(results)}")
    for d in cfg["ablation"]["datasets"]:
        info = catalog.dataset_info(d)
        rows = list(info.modalities) + ["multi"]
        cells = ablation_cells(results, d)
        t.blocks.append(_block(f"{d}/ours", f"{d} (ours)", cells, rows, list(ABLATION_COLS), group=d))
        ref = paper["table3"].get(info.paper_key)
        if ref:
            pcells = {r: dict(ref.get(PAPER_ROWS.get(r, r), {})) for r in rows}
            real = info.family != "builtin"
            t.blocks.append(_block(f"{d}/paper", paper_title(info.paper_key, real), pcells, rows,
                                   list(ABLATION_COLS), group=d,
                                   note="The paper's (no HGM, no DF) column equals its Late Fusion column of Table 1."))
            if real:
                t.blocks.append(_diff_block(f"{d}/diff", cells, pcells, rows, list(ABLATION_COLS), d))
        hgm = hgm_block(results, d)
        if hgm is not None:
            t.blocks.append(hgm)
    return t


# HGM diagnostics (log.jsonl keys written by MLA.epoch_diagnostics) -> column label.
HGM_COLS = {"hgm_retention_mean": "retention (epoch mean)", "hgm_retention_last": "retention (last step)",
            "hgm_P_eig_min": "P λ_min", "hgm_P_eig_max": "P λ_max", "hgm_P_trace": "P trace"}
HGM_OFF = "HGM off"        # hgm false: the head gradient is not modified (P = I), nothing logged
NOT_LOGGED = "not logged"  # HGM on, but the runs' logs predate the diagnostics


def _sig_stat(v: Stat) -> tuple[str, dict]:
    """Text and CSV values of a diagnostic Stat, in significant digits (retention and P's
    eigenvalues span many decades, so fixed decimals would print 0.00 for a frozen head)."""
    text = f"{v.mean:.3g}" if v.std is None else f"{v.mean:.3g} ± {v.std:.2g}"
    return text, {"mean": float(f"{v.mean:.6g}"), "std": None if v.std is None else float(f"{v.std:.6g}"), "n": v.n}


def hgm_block(results: dict[str, JobResult], dataset: str) -> Block | None:
    """Is HGM acting? Per MLA variant of ``dataset`` (the train run and each ablation variant),
    the head-gradient retention ||∇W·P|| / ||∇W|| and P's spectrum at the selected epoch and at
    the last epoch, mean over seeds. None when the dataset has no MLA run in the grid."""
    jobs = [r for r in results.values() if r.job.dataset == dataset and r.job.method == "mla"
            and (r.job.phase == "ablation" or (r.job.phase == "train" and r.job.modality is None))]
    if not jobs:
        return None
    rows, cells = [], {}
    for r in jobs:
        hgm_on = all((m.get("options") or {}).get("hgm", True) for m in r.metrics)
        for when in ("selected", "last"):
            row = f"{r.job.phase}/{r.job.tag}: {when} epoch"
            rows.append(row)
            records = []
            for m, log in zip(r.metrics, r.logs):
                epoch = m.get("selected_epoch") if when == "selected" else (log[-1]["epoch"] if log else None)
                records.append(next((rec for rec in log if rec.get("epoch") == epoch), {}))
            cells[row] = {}
            for key, col in HGM_COLS.items():
                if not hgm_on:
                    cells[row][col] = HGM_OFF
                else:
                    v = stat(rec[key] for rec in records if key in rec)
                    cells[row][col] = v if v is not None and v.n == len(records) else NOT_LOGGED
    cols = list(HGM_COLS.values())
    text = {r: {c: _sig_stat(v)[0] if isinstance(v, Stat) else v for c, v in cells[r].items()} for r in rows}
    values = {r: {c: _sig_stat(v)[1] if isinstance(v, Stat) else None for c, v in cells[r].items()} for r in rows}
    frame = pd.DataFrame([[text[r][c] for c in cols] for r in rows], index=rows, columns=cols)
    frame.index.name = "variant"
    return Block(f"{dataset}/hgm", f"{dataset}: is HGM acting?", frame, values, group=dataset,
                 note="Head-gradient retention ||∇W·P||_F / ||∇W||_F (1 = gradient untouched, near 0 = head "
                      "frozen; mean over the epoch's HGM steps, and the epoch's last step) and the spectrum of P "
                      "(s x s, P_0 = I, trace s) at the end of the epoch, " + STD_NOTE + ". "
                      f"'{HGM_OFF}': hgm false, the head gradient is not modified. "
                      "See docs/methods/mla.md.")


def selection_table(cfg: dict, results: dict[str, JobResult]) -> Table:
    """Per dataset and train job: test multi at the selected checkpoint vs best-on-test vs last epoch."""
    cols = ["selection", "selected", "best_on_test", "last_epoch", "best_on_test - selected"]
    t = Table("selection", "Checkpoint selection — how much choosing on the test set inflates numbers",
              f"Test accuracy (%) of the fused prediction, {STD_NOTE}. 'selected': the checkpoint chosen on "
              "the split named in 'selection'; 'best_on_test': the best epoch by test accuracy (the released "
              "code's protocol); 'last_epoch': the final epoch.")
    for d in cfg["datasets"]:
        rows, cells = [], {}
        for r in results.values():
            if r.job.phase != "train" or r.job.dataset != d:
                continue
            rows.append(r.job.tag)
            cells[r.job.tag] = {
                "selection": "/".join(sorted({str(m.get("selection")) for m in r.metrics})),
                "selected": r.acc("test", "multi"),
                "best_on_test": r.acc("best_on_test", "multi"),
                "last_epoch": r.acc("last_epoch", "multi"),
                "best_on_test - selected": r.stat(
                    lambda m: None if (m.get("best_on_test") or {}).get("multi") is None
                    else m["best_on_test"]["multi"] - m["test"]["multi"]),
            }
        t.blocks.append(_block(f"{d}/ours", d, cells, rows, cols, group=d))
    return t


FUSION_ROWS = {   # fusion variant (metrics.json "fusion" key) -> row label, per method
    "mla": {"dynamic": "multi: per-example entropy (paper DF)", "uniform": "multi: uniform mean (no DF)"},
    "mla_released": {"dynamic": "multi: batch-level entropy ([C] DF)", "fixed": "multi: fixed weights ([C] no DF)"},
}
RELEASED_COLS = ("mla", "mla_released", "mla − mla_released")
AUTHORS_COL = "authors' checkpoint"


def released_table(cfg: dict, results: dict[str, JobResult], scores: dict[str, dict] | None = None) -> Table:
    """MLA as the paper states it vs as the released code runs it, per dataset, and the released
    protocol's number (best epoch on the test set); 'not run' where a method is not in the grid.
    With ``scores`` (``collect.load_released_scores``), a column shows the authors' released
    checkpoint of each listed dataset scored by ``mla score-released`` ('not scored' elsewhere)."""
    scores = scores or {}
    t = Table("released", "MLA as published (mla) vs as released (mla_released)",
              f"Test accuracy (%), {STD_NOTE}. Same data, encoders, optimiser and epochs; mla: round-robin "
              "modality steps with head gradient modification and per-example dynamic fusion (Eqs. 1-8); "
              "mla_released: the training step of the released code at ab6c184 (one shared forward, one "
              "optimiser step per modality on the same head, no HGM, batch-level entropy fusion). "
              f"{selection_note(results)} 'released protocol' is mla_released's best epoch chosen on the TEST "
              "set, the number the released code prints; the gap to the validation-selected number is the "
              "inflation from test-set selection.")
    for d in cfg["datasets"]:
        jobs = {m: find_job(results, "train", d, m) for m in ("mla", "mla_released")}
        mods = list(catalog.dataset_info(d).modalities)
        fusion_rows = [(m, f, label) for m in FUSION_ROWS for f, label in FUSION_ROWS[m].items()]
        rows = mods + ["multi"] + [label for *_, label in fusion_rows] + ["multi: released protocol (best on test)"]
        cells: dict[str, dict[str, object]] = {r: {} for r in rows}
        for r in mods + ["multi"]:
            for m, job in jobs.items():
                cells[r][m] = job.acc("test", r) if job else NOT_RUN
            a, b = cells[r]["mla"], cells[r]["mla_released"]
            if isinstance(a, Stat) and isinstance(b, Stat):
                cells[r][RELEASED_COLS[2]] = Delta(a.mean - b.mean)
        for m, f, label in fusion_rows:
            job = jobs[m]
            cells[label][m] = job.stat(lambda mt, f=f: fusion_selected(mt, f)) if job else NOT_RUN
        if jobs["mla_released"]:
            cells[rows[-1]]["mla_released"] = jobs["mla_released"].acc("best_on_test", "multi")
        cols, note = list(RELEASED_COLS), ("Fused rows are scored on the same trained models, each fusion rule at "
                                           "the epoch selected on its own validation accuracy; the released code's "
                                           "protocol also trains on the validation samples, which this table does not.")
        if scores:
            cols.append(AUTHORS_COL)
            _authors_cells(cells, scores.get(d), mods)
            if d in scores:
                note += (f" {AUTHORS_COL}: the authors' file (sha256 {scores[d]['checkpoint']['source_sha256']}) scored "
                         f"on the {scores[d]['test_count']} official test examples with their inputs "
                         f"({scores[d]['inputs']['mode']}), one model: no ± over seeds.")
        t.blocks.append(_block(f"{d}/ours", d, cells, rows, cols, group=d, note=note))
    return t


def _authors_cells(cells: dict[str, dict[str, object]], score: dict | None, mods: list[str]) -> None:
    """The authors' checkpoint column: its per-modality and fused test accuracies (one model)."""
    if score is None:
        for r in cells:
            cells[r][AUTHORS_COL] = "not scored"
        return
    for r in mods + ["multi"]:
        cells[r][AUTHORS_COL] = Stat(score["test"][r], None, 1)
    for f, label in FUSION_ROWS["mla_released"].items():
        cells[label][AUTHORS_COL] = Stat(score["fusion"][f], None, 1)


# ---- writers ---------------------------------------------------------------------------------

def frame_md(frame: pd.DataFrame) -> str:
    """A DataFrame of strings as a GitHub markdown table (index as the first column)."""
    def esc(s: object) -> str:
        return str(s).replace("|", "\\|")

    header = [frame.index.name or ""] + [esc(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for idx, row in zip(frame.index, frame.itertuples(index=False)):
        lines.append("| " + " | ".join([esc(idx)] + [esc(v) for v in row]) + " |")
    return "\n".join(lines)


def table_md(t: Table) -> str:
    """The whole table as markdown: caption, then each block with its title and note."""
    parts = [f"# {t.title}", "", t.caption, ""]
    for b in t.blocks:
        parts += [f"## {b.title}", "", frame_md(b.frame), ""]
        if b.note:
            parts += [f"_{b.note}_", ""]
    return "\n".join(parts)


def table_csv(t: Table) -> str:
    """Long form, one line per cell: block, row, column, text, mean, std, n."""
    recs = []
    for b in t.blocks:
        for r in b.frame.index:
            for c in b.frame.columns:
                v = b.values[r][c]
                mean = v["mean"] if isinstance(v, dict) else v
                std = v["std"] if isinstance(v, dict) else None
                n = v["n"] if isinstance(v, dict) else None
                recs.append([b.key, r, c, b.frame.loc[r, c]] + ["" if x is None else str(x) for x in (mean, std, n)])
    df = pd.DataFrame(recs, columns=["block", "row", "column", "text", "mean", "std", "n"], dtype=object)
    return df.to_csv(index=False, lineterminator="\n")


def table_html(t: Table, level: int = 2) -> str:
    """An HTML fragment: heading, caption, and blocks of one group side by side."""
    esc = _html.escape
    out = [f"<h{level}>{esc(t.title)}</h{level}>", f"<p class=\"caption\">{esc(t.caption)}</p>"]
    groups: list[tuple[str, list[Block]]] = []
    for b in t.blocks:
        if groups and groups[-1][0] == b.group:
            groups[-1][1].append(b)
        else:
            groups.append((b.group, [b]))
    for _, blocks in groups:
        out.append('<div class="group">')
        for b in blocks:
            cls = "block paper" if b.key.endswith("/paper") else "block"
            out.append(f'<div class="{cls}"><h{level + 1}>{esc(b.title)}</h{level + 1}>')
            out.append(b.frame.to_html(border=0, escape=True, classes="tbl"))
            if b.note:
                out.append(f'<p class="note">{esc(b.note)}</p>')
            out.append("</div>")
        out.append("</div>")
    return "\n".join(out)


CSS = """body{font-family:sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;color:#222}
.group{display:flex;flex-wrap:wrap;gap:2em;align-items:flex-start;margin-bottom:1.5em}
.block.paper{background:#f4f4f4;padding:0 .8em .5em;border-left:4px solid #999}
table.tbl{border-collapse:collapse;font-size:.9em}
table.tbl td,table.tbl th{border-bottom:1px solid #ccc;padding:.2em .6em;text-align:right}
.caption,.note{font-size:.9em;color:#444;max-width:70em}
.holds{color:#075}.fails{color:#a00}.unsure{color:#a60}.na{color:#777}
table.tbl.scoreboard td,table.tbl.scoreboard th{text-align:left}"""


def html_page(title: str, body: str) -> str:
    """A standalone HTML page (no timestamps, no external resources)."""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{_html.escape(title)}'
            f"</title>\n<style>\n{CSS}\n</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def write_table(t: Table, out_dir: str | Path) -> list[Path]:
    """Write ``<name>.md``, ``<name>.csv`` and ``<name>.html`` into ``out_dir``."""
    out = Path(out_dir)
    files = {f"{t.name}.md": table_md(t), f"{t.name}.csv": table_csv(t),
             f"{t.name}.html": html_page(t.title, table_html(t, level=1))}
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
    return [out / n for n in files]


def gap_table(cfg: dict, gaps: dict[str, dict], paper: dict) -> Table:
    """Modality gap per analysed dataset: modality pairs + mean x the analysed methods."""
    ref = paper.get("modality_gap", {})
    t = Table("modality_gap", "Modality gap (Figure 3)",
              "Distance between the centroids of the L2-normalised test-set encoder features of two "
              "modalities (Liang et al. 2022; the paper gives no formula, so this definition is an "
              f"assumption), measured on every seed's run, {STD_NOTE}; the t-SNE figure shows the run "
              "with seed analysis.seed.")
    methods = list(cfg["analysis"]["methods"])
    for d in cfg["analysis"]["datasets"]:
        g = gap_stats(gaps[d])
        rows = [k for k in g[methods[0]] if k != "mean"] + ["mean"]
        cells = {r: {m: g[m].get(r) for m in methods} for r in rows}
        n = min(g[m]["mean"].n for m in methods)
        b = _block(f"{d}/ours", f"{d} (ours, {n} seed{'s' if n > 1 else ''})", cells, rows, methods, group=d)
        b.frame = pd.DataFrame([[g[m][r].fmt(4) for m in methods] for r in rows], index=rows, columns=methods)
        b.frame.index.name = "pair"
        t.blocks.append(b)
        if ref:
            info = catalog.dataset_info(d)
            pair = "-".join(ref.get("modalities", []))
            pcells = {pair: {m: ref.get(m) for m in methods}}
            pb = _block(f"{d}/paper", paper_title(ref.get("dataset", ""), info.paper_key == ref.get("dataset")
                                                  and info.family != "builtin"), pcells, [pair], methods, group=d)
            pb.frame.index.name = "pair"
            t.blocks.append(pb)
    return t
