"""The paper's claims checked on our numbers, stated plainly.

A comparison "A > B" holds when mean(A) − mean(B) exceeds the pooled standard deviation
sqrt((s_A² + s_B²) / 2) (sample stds over seeds). With a single seed there is no std: the means
are compared plainly and the item says so. A number whose job is not in the grid makes the item
"not evaluated", never "does not hold".
"""
from __future__ import annotations

import html as _html
import math
from dataclasses import dataclass, field

from mla import catalog
from mla.report.collect import JobResult, Stat
from mla.report.tables import ablation_cells, find_job

HOLDS, FAILS, NOT_EVALUATED = "holds", "does not hold", "not evaluated"
LAZY_POINTS = 5.0   # a laziness gap this large is called substantial
RULE = ("holds = mean difference in the claimed direction larger than the pooled standard deviation "
        "sqrt((s1² + s2²)/2) over seeds (ddof=1); with a single seed there is no std and the means are "
        "compared plainly.")


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

    def summary(self) -> str:
        ev = [i for i in self.items if i.verdict != NOT_EVALUATED]
        if not ev:
            return NOT_EVALUATED
        n = sum(i.verdict == HOLDS for i in ev)
        word = HOLDS if n == len(ev) else FAILS if n == 0 else "holds partly"
        rest = len(self.items) - len(ev)
        return f"{word}: {n} of {len(ev)} comparisons hold" + (f" ({rest} not evaluated)" if rest else "")


def compare(subject: str, a: Stat | None, b: Stat | None, name_a: str, name_b: str,
            digits: int = 2, extra: str = "") -> Item:
    """Item for the claim ``a > b``."""
    if a is None or b is None:
        missing = " and ".join(n for n, s in ((name_a, a), (name_b, b)) if s is None)
        return Item(subject, NOT_EVALUATED, f"no result for {missing} in this grid")
    diff = a.mean - b.mean
    if a.std is None or b.std is None:
        thr, how = 0.0, "single seed: no std, compared plainly"
    else:
        thr = math.sqrt((a.std ** 2 + b.std ** 2) / 2)
        how = f"pooled std {thr:.{digits}f}"
    ok = diff > thr
    why = "" if ok else ("; in the opposite direction" if diff <= 0 else "; within seed noise")
    detail = (f"{name_a} {a.fmt(digits)} vs {name_b} {b.fmt(digits)}: difference {diff:+.{digits}f} "
              f"({how}){why}{extra}")
    nums = {"a": a.as_dict(), "b": b.as_dict(), "diff": round(diff, 4), "threshold": round(thr, 4)}
    return Item(subject, HOLDS if ok else FAILS, detail, nums)


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
    c = Claim("c_weak_modality", "MLA lifts the weak modality (the one with the largest laziness gap, "
              "alone − concat): its accuracy under MLA exceeds that under Concat.")
    for d in cfg["datasets"]:
        gaps = {m: a.mean - j.mean for m, (a, j) in _laziness(cfg, results, d).items() if a and j}
        if not gaps:
            c.items.append(Item(d, NOT_EVALUATED, "no alone/concat pair to find the weak modality"))
            continue
        weak = max(gaps, key=gaps.get)   # ties: the first in modality order
        c.items.append(compare(f"{d} / {weak} (laziness gap {gaps[weak]:+.2f})",
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
        g = gaps.get(d, {}).get("gap", {})
        st = {m: Stat(float(g[m]["mean"]), None, 1) for m in ("mla", "concat") if m in g}
        pairs = ", ".join(f"{m} {k} {v:.4f}" for m in ("concat", "mla") if m in g
                          for k, v in g[m].items() if k != "mean")
        seed = gaps.get(d, {}).get("seed")
        c.items.append(compare(f"{d} (seed {seed})", st.get("mla"), st.get("concat"), "mla", "concat",
                               digits=4, extra=f"; per pair: {pairs}" if pairs else ""))
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


def claims_md(claims: list[Claim]) -> str:
    parts = ["# The paper's claims on our numbers", "", f"Rule: {RULE}", ""]
    for c in claims:
        parts += [f"## ({c.key.split('_')[0]}) {c.statement}", "", f"**Overall: {c.summary()}**", ""]
        parts += [f"- {i.subject}: **{i.verdict}** — {i.detail}" for i in c.items] or ["- nothing to compare"]
        parts.append("")
    return "\n".join(parts)


def claims_html(claims: list[Claim]) -> str:
    esc = _html.escape
    cls = {HOLDS: "holds", FAILS: "fails", NOT_EVALUATED: "na"}
    out = ["<h2>The paper's claims on our numbers</h2>", f'<p class="caption">Rule: {esc(RULE)}</p>']
    for c in claims:
        out += [f"<h3>({esc(c.key.split('_')[0])}) {esc(c.statement)}</h3>",
                f"<p><b>Overall: {esc(c.summary())}</b></p>", "<ul>"]
        out += [f'<li>{esc(i.subject)}: <b class="{cls[i.verdict]}">{esc(i.verdict)}</b> — {esc(i.detail)}</li>'
                for i in c.items]
        out.append("</ul>")
    return "\n".join(out)


def claims_values(claims: list[Claim]) -> dict:
    """Verdicts and numbers for the report's metrics.json."""
    return {c.key: {"summary": c.summary(),
                    "items": {i.subject: {"verdict": i.verdict, **i.numbers} for i in c.items}}
            for c in claims}
