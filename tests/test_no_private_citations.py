"""No user-facing file cites a document users do not have.

The README, the package, the configs, the workflow and the docs cite the paper (section, equation,
table) or the official repositories (file and lines), never internal notes: not ``MLA.md``, not
``reference §...``, not ``DESIGN ...``, and not the notes' discrepancy codes such as ``(D12)`` or
``(E7)``. ``tests/`` and ``bench/`` are not scanned.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("README.md", "mla", "config", "workflow", "docs")

# A discrepancy code of the internal notes (D1-D18, E1-E7, or a range of them) used as a citation:
# after "(", "," or ";" and before ")", ",", ";" or ":", e.g. "(D9)", "(D3, D12)", "(§3.6, D1)".
_CODE = r"(?:E[1-7]|D[0-9]{1,2})"
PATTERNS = {
    "MLA.md": re.compile(r"MLA\.md"),
    "reference §": re.compile(r"reference §"),
    "DESIGN": re.compile(r"DESIGN"),
    "note code": re.compile(rf"[(,;] ?{_CODE}(?:[-–]{_CODE})?(?=[),;:])"),
}

# Files exempt from the check (none: every file is checked).
ALLOWED: set[str] = set()


def citations(text: str) -> list[tuple[int, str, str]]:
    """``[(line number, pattern name, line)]`` for every private citation in ``text``."""
    hits = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        for name, pattern in PATTERNS.items():
            if pattern.search(line):
                hits.append((lineno, name, line.strip()))
    return hits


def scanned_files() -> list[str]:
    """The tracked (and new, not ignored) files under ``SCANNED``, relative to the repository root."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z", "--", *SCANNED], cwd=ROOT,
                         capture_output=True, text=True)
    if out.returncode != 0:
        pytest.fail(f"git ls-files failed in {ROOT} (this test needs a git checkout): {out.stderr.strip()}")
    return sorted(f for f in set(out.stdout.split("\0")) if f and (ROOT / f).is_file())


@pytest.mark.parametrize("line", [
    "see MLA.md §3.11.2 for the format",
    "(reference §1.6, item 3)",
    "# DESIGN 5: flag cells",
    "crashes (D9), so",
    "the batch-level gate (D3, D12);",
    "inactive (§3.6, D1), so",
    "Missing rates (E1): every sample",
    "``mla_released`` (D1-D5, D12) against",
    "as noted (E7).",
])
def test_each_form_of_private_citation_is_found(line):
    assert citations(f"ok line\n{line}\n") and citations(f"ok line\n{line}\n")[0][0] == 2


@pytest.mark.parametrize("line", [
    "The paper, CVPR 2024, §4.1.1 and Eqs. (3)-(5)",
    "[C] main.py L957-963 pass the undeclared args.ewc_flag",
    "raw.githubusercontent.com/.../data/my_train_cre.txt",
    '"C-E1:\\tNeutral;\\t()", "A-E1:\\tval 3; act 2; dom  2;\\t()"',  # IEMOCAP's own evaluator codes
    "a 2-D sin-cos table; (B, N, D) -> (B, D); design choice",
    "docs/methods/encoders.md (Deviations)",
])
def test_real_sources_and_ordinary_text_are_not_flagged(line):
    assert citations(line) == []


def test_allow_list_names_existing_files_only():
    missing = sorted(f for f in ALLOWED if not (ROOT / f).is_file())
    assert not missing, f"ALLOWED names files that do not exist: {missing}; remove them from the list"


def test_no_user_facing_file_cites_private_notes():
    files = scanned_files()
    assert "README.md" in files and any(f.startswith("docs/") for f in files), files[:10]
    found = []
    for rel in files:
        if rel in ALLOWED:
            continue
        raw = (ROOT / rel).read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            pytest.fail(f"{rel}: not UTF-8 ({exc}); every scanned file must be text")
        found += [f"{rel}:{n}: [{name}] {line}" for n, name, line in citations(text)]
    assert not found, ("files cite documents users do not have; cite the paper (section, equation) or the "
                       "official repository (file, lines) instead:\n" + "\n".join(found))
