"""Score a mutmut run (bench/mutation.sh): mutants per file, killed / (total - equivalent), survivors.

    python bench/mutation_score.py RESULTS CLASSIFIED [FILE ...] [--markdown OUT]

RESULTS is ``mutmut results --all true`` (lines ``<mutant>: <status>``), or several such files
joined with commas (for a mutant in several, the last file that checked it wins). CLASSIFIED lists surviving mutants
with a class and a reason, one ``<mutant> equivalent|untestable <reason>`` per line (``#``
comments allowed). Only the mutants of the given FILEs are scored (default: every file in
RESULTS). A mutant counts as killed when a test failed or timed out on it; ``equivalent`` ones
are left out of the score; every other mutant (survived, no tests, untestable, ...) is a
survivor. A CLASSIFIED entry that names no mutant of the run is an error: the list must not
silently drift from the code.
"""
from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

KILLED = {"killed", "timeout"}
# mutmut's names: <module>.x_<function>__mutmut_<n> or <module>.xǁ<Class>ǁ<method>__mutmut_<n>
NAME = re.compile(r"^(?P<module>[\w.]+?)\.x(?:_|ǁ)(?P<function>.+)__mutmut_(?P<n>\d+)$")


def parse_results(text: str) -> dict[str, str]:
    """``{mutant: status}`` from ``mutmut results --all true``."""
    out = {}
    for line in text.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and NAME.match(name):
            out[name] = status.strip()
    return out


CLASSES = ("equivalent", "untestable")


def parse_classified(text: str) -> dict[str, tuple[str, str]]:
    """``{mutant: (class, reason)}``; every entry needs a known class and a reason."""
    out = {}
    for i, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, kind, reason = (line.split(None, 2) + ["", ""])[:3]
        if kind not in CLASSES or not reason.strip():
            raise SystemExit(f"mutation_score: line {i} of the classified list: want '<mutant> "
                             f"{'|'.join(CLASSES)} <reason>', got {line!r}")
        out[name] = (kind, reason.strip())
    return out


def module_file(name: str) -> str:
    """``mla.methods.qmf.x_rank_loss__mutmut_3`` -> ``mla/methods/qmf.py``."""
    return NAME.match(name)["module"].replace(".", "/") + ".py"


def function_of(name: str) -> str:
    return NAME.match(name)["function"].replace("ǁ", ".").lstrip(".")


def score(results: dict[str, str], classified: dict[str, tuple[str, str]], files: list[str]) -> tuple[list[str], int]:
    """The report lines and the number of non-equivalent survivors."""
    stale = sorted(n for n in set(classified) - set(results) if not files or module_file(n) in files)
    if stale:
        raise SystemExit("mutation_score: the equivalent list names mutants this run does not have "
                         f"(code changed? re-classify): {', '.join(stale)}")
    chosen = {n: s for n, s in results.items() if not files or module_file(n) in files}
    equivalent = {n: r for n, (k, r) in classified.items() if k == "equivalent"}
    lines = ["| file | mutants | killed | equivalent | survivors | score |", "|---|---|---|---|---|---|"]
    totals: Counter = Counter()
    by_file: dict[str, Counter] = {}
    for name, status in chosen.items():
        c = by_file.setdefault(module_file(name), Counter())
        c["total"] += 1
        c["killed"] += status in KILLED
        c["equivalent"] += status not in KILLED and name in equivalent
    for f in sorted(by_file):
        c = by_file[f]
        totals.update(c)
        lines.append(_row(f, c))
    lines.append(_row("**all**", totals))
    survivors = sorted((n for n, s in chosen.items() if s not in KILLED and n not in equivalent), key=_order)
    lines += ["", f"Non-equivalent survivors: {len(survivors)}"]
    for n in survivors:
        kind, reason = classified.get(n, ("unclassified", ""))
        lines.append(f"- `{n}` ({chosen[n]}, {kind}): {function_of(n)}" + (f". {reason}" if reason else ""))
    eq = sorted((n for n in chosen if n in equivalent and chosen[n] not in KILLED), key=_order)
    lines += ["", f"Equivalent: {len(eq)}"] + [f"- `{n}`: {equivalent[n]}" for n in eq]
    killed_listed = sorted(n for n in chosen if n in classified and chosen[n] in KILLED)
    if killed_listed:
        lines += ["", "Classified but killed (remove from the list): " + ", ".join(killed_listed)]
    return lines, len(survivors)


def _row(label: str, c: Counter) -> str:
    live = c["total"] - c["equivalent"]
    pct = f"{100.0 * c['killed'] / live:.1f} %" if live else "n/a"
    return f"| {label} | {c['total']} | {c['killed']} | {c['equivalent']} | {live - c['killed']} | {pct} |"


def _order(name: str) -> tuple[str, int]:
    m = NAME.match(name)
    return name.rsplit("__mutmut_", 1)[0], int(m["n"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", help="mutmut results file(s), comma-separated")
    ap.add_argument("classified", type=Path)
    ap.add_argument("files", nargs="*")
    ap.add_argument("--markdown", type=Path, help="also write the report here")
    a = ap.parse_args(argv)
    results: dict[str, str] = {}
    for path in a.results.split(","):
        for name, status in parse_results(Path(path).read_text()).items():
            if status != "not checked" or name not in results:
                results[name] = status
    if not results:
        raise SystemExit(f"mutation_score: no mutant in {a.results}; did mutmut run?")
    classified = parse_classified(a.classified.read_text()) if a.classified.exists() else {}
    lines, _ = score(results, classified, a.files)
    print("\n".join(lines))
    if a.markdown:
        a.markdown.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
