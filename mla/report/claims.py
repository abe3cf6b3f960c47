"""The paper's claims checked on our numbers, each comparison with a confidence interval.

Every item compares two cells "A > B" over seeds with Welch's 95 % interval of the difference
(:mod:`mla.report.verdicts`): **holds**, **contradicted**, **inconclusive**, **not applicable** (the
claim's premise fails) or **not evaluated** (a cell is not in the grid). A claim is a statement about
all its items ("MLA beats every baseline"): it holds when every applicable item holds, is contradicted
when any item is, and is inconclusive otherwise; its headline is its weakest item (the item that
decides that verdict, with the lowest interval bound among those), with that item's interval.
"""
from __future__ import annotations

import html as _html
import statistics
from dataclasses import dataclass, field

from mla import catalog
from mla.report.collect import JobResult, Stat, gap_stats
from mla.report.tables import ablation_cells, find_job
from mla.report.verdicts import (CONTRADICTED, HOLDS, INCONCLUSIVE, NOT_APPLICABLE, NOT_EVALUATED, RULE,
                                 smallest_significant, verdict, welch)

LAZY_POINTS = 5.0   # a modality is lazy when alone − concat holds and is at least this large


@dataclass
class Item:
    subject: str
    verdict: str
    detail: str
    numbers: dict = field(default_factory=dict)


@dataclass
class Claim:
    key: str
    statement: str
    items: list[Item] = field(default_factory=list)

    def applicable(self) -> list[Item]:
        return [i for i in self.items if i.verdict in (HOLDS, CONTRADICTED, INCONCLUSIVE)]

    def verdict(self) -> str:
        """The claim's verdict over its items (see the module docstring)."""
        ev = self.applicable()
        if not ev:
            if any(i.verdict == NOT_APPLICABLE for i in self.items):
                return NOT_APPLICABLE
            return NOT_EVALUATED
        if any(i.verdict == CONTRADICTED for i in ev):
            return CONTRADICTED
        return HOLDS if all(i.verdict == HOLDS for i in ev) else INCONCLUSIVE

    def weakest(self) -> Item | None:
        """The applicable item that decides the claim's verdict: a contradicted item if there is one, else
        an inconclusive one, else a holding one; among those, the one with the lowest interval bound (its
        difference when it has no interval). The smallest difference alone could pick an item that holds
        narrowly while a larger but noisier one leaves the claim inconclusive."""
        ev = self.applicable()
        if not ev:
            return None
        rank = {CONTRADICTED: 0, INCONCLUSIVE: 1, HOLDS: 2}
        low = lambda i: i.numbers["diff"] if i.numbers.get("ci_low") is None else i.numbers["ci_low"]  # noqa: E731
        return min(ev, key=lambda i: (rank[i.verdict], low(i)))

    def summary(self) -> str:
        """E.g. ``holds (12 of 12 comparisons hold)``, ``contradicted (3 hold, 1 contradicted of 4 ...)``."""
        ev = self.applicable()
        word = self.verdict()
        if not ev:
            return word
        labels = {HOLDS: "hold", CONTRADICTED: "contradicted", INCONCLUSIVE: "inconclusive"}
        counts = [f"{n} {labels[v]}" for v in labels if (n := sum(i.verdict == v for i in ev))]
        rest = len(self.items) - len(ev)
        tail = f"; {rest} not applicable or not evaluated" if rest else ""
        return f"{word} ({', '.join(counts)} of {len(ev)} comparisons{tail})"

    def headline(self, digits: int = 2) -> dict:
        """One scoreboard line: verdict, the weakest item's effect and interval, the counts."""
        w = self.weakest()
        return {"claim": self.key, "statement": self.statement, "verdict": self.verdict(),
                "summary": self.summary(), "weakest": w.subject if w else None,
                "effect": w.numbers["diff"] if w else None,
                "interval": [w.numbers["ci_low"], w.numbers["ci_high"]] if w else None}


def compare(subject: str, a: Stat | None, b: Stat | None, name_a: str, name_b: str,
            digits: int = 2, extra: str = "") -> Item:
    """Item for the claim ``a > b``."""
    if a is None or b is None:
        missing = " and ".join(n for n, s in ((name_a, a), (name_b, b)) if s is None)
        return Item(subject, NOT_EVALUATED, f"no result for {missing} in this grid")
    iv = welch(a, b)
    v = verdict(iv)
    note = "" if iv.half is not None else "; one seed: no interval, so no verdict beyond noise"
    detail = (f"{name_a} {a.fmt(digits)} vs {name_b} {b.fmt(digits)}: difference {iv.fmt(digits)} "
              f"(95 % CI, Welch){note}{extra}")
    r = lambda x: None if x is None else round(x, 4)  # noqa: E731
    nums = {"a": a.as_dict(), "b": b.as_dict(), "diff": round(iv.diff, 4), "ci_low": r(iv.lo),
            "ci_high": r(iv.hi), "half_width": r(iv.half), "df": r(iv.df)}
    return Item(subject, v, detail, nums)


def not_applicable(subject: str, why: str) -> Item:
    return Item(subject, NOT_APPLICABLE, why)


def _acc(job: JobResult | None, key: str) -> Stat | None:
    return job.acc("test", key) if job else None


def _laziness(cfg: dict, results: dict[str, JobResult], d: str) -> dict[str, tuple[Stat | None, Stat | None]]:
    """Per modality of ``d``: (alone, under concat) test accuracy."""
    concat = find_job(results, "train", d, "concat")
    return {m: (_acc(find_job(results, "train", d, "unimodal", modality=m), m), _acc(concat, m))
            for m in catalog.dataset_info(d).modalities}


def claim_laziness(cfg: dict, results: dict[str, JobResult]) -> Claim:
    c = Claim("a_laziness", "Modality laziness: trained jointly (Concat), each modality's own predictor is "
              "worse than the same modality trained alone.")
    for d in cfg["datasets"]:
        for m, (alone, joint) in _laziness(cfg, results, d).items():
            extra = ""
            if alone and joint:
                big = alone.mean - joint.mean >= LAZY_POINTS
                extra = f"; gap ≥ {LAZY_POINTS:g} points: {'yes' if big else 'no'}"
            c.items.append(compare(f"{d} / {m}", alone, joint, "alone", "concat", extra=extra))
    return c


def claim_mla_multi(cfg: dict, results: dict[str, JobResult]) -> Claim:
    c = Claim("b_mla_multi", "MLA's fused (multi) accuracy is higher than every other fusion method's "
              "(Table 1).")
    others = [m for m in cfg["methods"] if m not in ("unimodal", "mla")] or ["concat"]
    for d in cfg["datasets"]:
        mla = _acc(find_job(results, "train", d, "mla"), "multi")
        for o in others:
            c.items.append(compare(f"{d}: mla vs {o}", mla, _acc(find_job(results, "train", d, o), "multi"),
                                   "mla", o))
    return c


def claim_weak_modality(cfg: dict, results: dict[str, JobResult]) -> Claim:
    c = Claim("c_weak_modality", "MLA lifts the lazy modality (the one with the largest laziness gap, "
              "alone − concat, among those whose laziness holds and is at least "
              f"{LAZY_POINTS:g} points): its accuracy under MLA exceeds that under Concat.")
    for d in cfg["datasets"]:
        pairs = {m: (a, j) for m, (a, j) in _laziness(cfg, results, d).items() if a and j}
        if not pairs:
            c.items.append(Item(d, NOT_EVALUATED, "no alone/concat pair to find the lazy modality"))
            continue
        lazy = {m: a.mean - j.mean for m, (a, j) in pairs.items()
                if verdict(welch(a, j)) == HOLDS and a.mean - j.mean >= LAZY_POINTS}
        if not lazy:
            gaps = ", ".join(f"{m} {a.mean - j.mean:+.2f}" for m, (a, j) in pairs.items())
            c.items.append(not_applicable(d, f"no lazy modality (alone − concat: {gaps}; lazy = holds and "
                                              f"≥ {LAZY_POINTS:g} points), so there is nothing to lift"))
            continue
        weak = max(lazy, key=lazy.get)   # ties: the first in modality order
        c.items.append(compare(f"{d} / {weak} (laziness gap {lazy[weak]:+.2f})",
                               _acc(find_job(results, "train", d, "mla"), weak),
                               _acc(find_job(results, "train", d, "concat"), weak), "mla", "concat"))
    return c


def claim_ablation(cfg: dict, results: dict[str, JobResult]) -> Claim:
    c = Claim("d_ablation", "HGM and DF each help (Table 3, multi): none < df, none < hgm, df < hgm_df, "
              "hgm < hgm_df.")
    for d in cfg["ablation"]["datasets"]:
        multi = ablation_cells(results, d)["multi"]
        for lo, hi in (("none", "df"), ("none", "hgm"), ("df", "hgm_df"), ("hgm", "hgm_df")):
            a, b = multi[hi], multi[lo]
            c.items.append(compare(f"{d}: {lo} < {hi}", a if isinstance(a, Stat) else None,
                                   b if isinstance(b, Stat) else None, hi, lo))
    return c


def claim_gap(cfg: dict, gaps: dict[str, dict], paper: dict) -> Claim:
    ref = paper.get("modality_gap", {})
    c = Claim("e_modality_gap", "MLA's encoders give a larger modality gap than Concat's (Figure 3; the paper "
              f"prints {ref.get('concat')} for Concat and {ref.get('mla')} for MLA on "
              f"{ref.get('dataset')}, {' vs '.join(ref.get('modalities', []))}).")
    for d in cfg["analysis"]["datasets"]:
        g = gap_stats(gaps.get(d, {}))   # over seeds: every seed's run is measured
        st = {m: g[m]["mean"] for m in ("mla", "concat") if m in g}
        pairs = ", ".join(f"{m} {k} {v.mean:.4f}" for m in ("concat", "mla") if m in g
                          for k, v in g[m].items() if k != "mean")
        c.items.append(compare(d, st.get("mla"), st.get("concat"), "mla", "concat",
                               digits=4, extra=f"; per pair (seed means): {pairs}" if pairs else ""))
    return c


def claim_missing(cfg: dict, results: dict[str, JobResult]) -> Claim:
    c = Claim("f_missing", "MLA's fused accuracy is higher than the other methods' at every missing rate "
              "(Table 2).")
    others = [m for m in cfg["missing"]["methods"] if m != "mla"]
    for d in cfg["missing"]["datasets"]:
        for r in cfg["missing"]["rates"]:
            mla = _acc(find_job(results, "missing", d, "mla", rate=float(r)), "multi")
            for o in others:
                c.items.append(compare(f"{d} η={round(float(r) * 100)}%: mla vs {o}", mla,
                                       _acc(find_job(results, "missing", d, o, rate=float(r)), "multi"),
                                       "mla", o))
    return c


def evaluate(cfg: dict, results: dict[str, JobResult], gaps: dict[str, dict], paper: dict) -> list[Claim]:
    """All claims, in the paper's order of presentation."""
    return [claim_laziness(cfg, results), claim_mla_multi(cfg, results), claim_weak_modality(cfg, results),
            claim_ablation(cfg, results), claim_gap(cfg, gaps, paper), claim_missing(cfg, results)]


def noise(cfg: dict, results: dict[str, JobResult]) -> dict:
    """The seed noise of Table 1's multi cells and the smallest difference it lets us call significant:
    the median and largest seed std, and t_{0.975, 2n−2} · median std · sqrt(2/n) for n seeds."""
    stds, n = [], len(cfg["seeds"])
    for d in cfg["datasets"]:
        for m in cfg["methods"]:
            if m == "unimodal":
                continue
            s = _acc(find_job(results, "train", d, m), "multi")
            if s is not None and s.std is not None:
                stds.append(s.std)
    if not stds:
        return {"seeds": n, "cells": 0, "median_std": None, "max_std": None, "smallest_significant": None}
    med = statistics.median(stds)
    mdd = smallest_significant(med, n)
    return {"seeds": n, "cells": len(stds), "median_std": round(med, 4), "max_std": round(max(stds), 4),
            "smallest_significant": None if mdd is None else round(mdd, 4)}


def _noise_line(nz: dict) -> str:
    if not nz["cells"]:
        return "Seed noise: no Table 1 multi cell with more than one seed."
    return (f"Seed noise: {nz['seeds']} seeds; Table 1's multi cells have a median seed std of "
            f"{nz['median_std']:.2f} points (largest {nz['max_std']:.2f}, {nz['cells']} cells), so the smallest "
            f"difference two such cells can show as significant is {nz['smallest_significant']:.2f} points.")


def _effect(c: Claim) -> str:
    w = c.weakest()
    if w is None:
        return "—"
    lo, hi = w.numbers["ci_low"], w.numbers["ci_high"]
    ci = "no interval (one seed)" if lo is None else f"[{lo:+.2f}, {hi:+.2f}]"
    return f"{w.numbers['diff']:+.2f} {ci} ({w.subject})"


def scoreboard_md(claims: list[Claim]) -> str:
    """One Markdown table row per claim: verdict, weakest comparison, counts."""
    rows = ["| claim | verdict | weakest comparison: difference [95 % CI] | comparisons |",
            "| --- | --- | --- | --- |"]
    rows += [f"| ({c.key.split('_')[0]}) {_short(c)} | **{c.verdict()}** | {_effect(c)} | {c.summary()} |"
             for c in claims]
    return "\n".join(rows)


SHORT = {"a_laziness": "every modality is weaker trained jointly than alone",
         "b_mla_multi": "MLA's fused accuracy beats every method (Table 1)",
         "c_weak_modality": "MLA lifts the lazy modality",
         "d_ablation": "HGM and DF each help (Table 3)",
         "e_modality_gap": "MLA widens the modality gap",
         "f_missing": "MLA beats every method at every missing rate (Table 2)"}


def _short(c: Claim) -> str:
    """The claim's name for a one-line scoreboard."""
    return SHORT.get(c.key, c.key)


def noise_line(nz: dict) -> str:
    return _noise_line(nz)


def claims_md(claims: list[Claim], nz: dict | None = None) -> str:
    parts = ["# The paper's claims on our numbers", "", f"Rule: {RULE}", ""]
    if nz is not None:
        parts += [_noise_line(nz), ""]
    parts += [scoreboard_md(claims), ""]
    for c in claims:
        parts += [f"## ({c.key.split('_')[0]}) {c.statement}", "", f"**Overall: {c.summary()}**", ""]
        parts += [f"- {i.subject}: **{i.verdict}** — {i.detail}" for i in c.items] or ["- nothing to compare"]
        parts.append("")
    return "\n".join(parts)


CSS_CLASS = {HOLDS: "holds", CONTRADICTED: "fails", INCONCLUSIVE: "unsure", NOT_APPLICABLE: "na",
             NOT_EVALUATED: "na"}


def scoreboard_html(claims: list[Claim], nz: dict | None = None) -> str:
    """The report's first screen: one line per claim (verdict, weakest effect with its interval)."""
    esc = _html.escape
    rows = "\n".join(
        f'<tr><td>({esc(c.key.split("_")[0])})</td><td>{esc(c.statement)}</td>'
        f'<td><b class="{CSS_CLASS[c.verdict()]}">{esc(c.verdict())}</b></td>'
        f"<td>{esc(_effect(c))}</td><td>{esc(c.summary())}</td></tr>" for c in claims)
    head = ("<tr><th></th><th>claim</th><th>verdict</th><th>weakest comparison: difference [95 % CI]</th>"
            "<th>comparisons</th></tr>")
    noise_p = f'<p class="caption">{esc(_noise_line(nz))}</p>' if nz is not None else ""
    return (f'<h2>The paper\'s claims on our numbers</h2>\n<table class="tbl scoreboard">\n{head}\n{rows}\n'
            f'</table>\n{noise_p}<p class="caption">{esc(RULE)}</p>')


def claims_html(claims: list[Claim]) -> str:
    """Every comparison of every claim (below the tables)."""
    esc = _html.escape
    out = ["<h2>Every comparison behind the claims</h2>"]
    for c in claims:
        out += [f"<h3>({esc(c.key.split('_')[0])}) {esc(c.statement)}</h3>",
                f"<p><b>Overall: {esc(c.summary())}</b></p>", "<ul>"]
        out += [f'<li>{esc(i.subject)}: <b class="{CSS_CLASS[i.verdict]}">{esc(i.verdict)}</b> — {esc(i.detail)}</li>'
                for i in c.items]
        out.append("</ul>")
    return "\n".join(out)


def claims_values(claims: list[Claim], nz: dict | None = None) -> dict:
    """Verdicts and numbers for the report's metrics.json."""
    out = {c.key: {"summary": c.summary(), "verdict": c.verdict(), "headline": c.headline(),
                   "items": {i.subject: {"verdict": i.verdict, **i.numbers} for i in c.items}}
           for c in claims}
    if nz is not None:
        out["noise"] = nz
    return out
