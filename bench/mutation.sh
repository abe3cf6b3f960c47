#!/usr/bin/env bash
# Mutation testing of the training methods against their fast unit tests (issue 10, not run by CI).
#
#   bench/mutation.sh [FILE ...]     e.g.  bench/mutation.sh mla/methods/qmf.py
#
# Mutates (default) mla/methods/*.py, mla/fusion.py, mla/missing.py, mla/evaluate.py and, in
# mla/train.py, the class ``Selection`` only (the rest of the file is fenced off with mutmut's
# "no mutate" pragmas in the scratch copy) with mutmut 3.8.1 (the optional extra ``mutation``), runs only the unit tests in
# TESTS below on every mutant, and prints per file the mutant counts, the score
# killed / (total - equivalent) and every survivor. Surviving mutants judged equivalent (no output can
# change) or untestable are listed, with the reason, in bench/mutation_classified.txt;
# bench/mutation_survivors.md records the last full run.
#
# mutmut copies the tree it mutates into mutants/; we run it in a scratch copy of the working tree
# (MUTATION_WORK, default .mutation/, git-ignored) so that its config and mutants/ never touch the
# checkout. Environment: MUTATION_JOBS (parallel mutants, default 2), MUTATION_WORK; MUTATION_ONLY, a
# file of mutant names (one a line), re-runs only those (e.g. the survivors of an earlier run, after
# adding tests: score both result files together with bench/mutation_score.py).
set -euo pipefail

root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
cd "$root"
work=${MUTATION_WORK:-$root/.mutation}
jobs=${MUTATION_JOBS:-2}
if [ $# -gt 0 ]; then files=("$@"); else
  files=(mla/methods/*.py mla/fusion.py mla/missing.py mla/evaluate.py mla/train.py)
fi
for f in "${files[@]}"; do
  [ -f "$f" ] || { echo "bench/mutation.sh: no file $f (give paths relative to the repository root)" >&2; exit 2; }
done
TESTS=(tests/test_methods.py tests/test_baselines.py tests/test_hgm.py tests/test_mla_released.py
       tests/test_init_augment.py tests/test_method_contracts.py tests/test_missing_protocol.py
       tests/test_missing_baselines*.py)

UV_PYTHON_DOWNLOADS=never UV_COMPILE_BYTECODE=1 uv sync --locked --extra dev --extra mutation --quiet

# Scratch copy of the working tree (tracked and untracked, not ignored files).
rm -rf "$work"
mkdir -p "$work"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  if [ -e "$f" ]; then mkdir -p "$work/$(dirname "$f")"; cp -p "$f" "$work/$f"; fi  # skip deleted files
done
{
  echo "[mutmut]"
  echo "source_paths = mla"
  echo "only_mutate ="
  for f in "${files[@]}"; do echo "    $f"; done
  echo "also_copy ="
  echo "    config"
  echo "    bench"
  echo "pytest_add_cli_args ="
  for a in -n 0 -p no:cacheprovider -W ignore::UserWarning; do echo "    $a"; done
  echo "pytest_add_cli_args_test_selection ="
  for t in "${TESTS[@]}"; do echo "    $t"; done
  # torch is not fork-safe after use; fork each mutant from a clean server process.
  echo "process_isolation = forkserver"
} > "$work/setup.cfg"

# mla/train.py: only ``Selection`` is in scope; fence the rest of the file off with mutmut's pragmas
# (in the scratch copy only), so its training-loop functions are not mutated.
if printf '%s\n' "${files[@]}" | grep -qx mla/train.py; then
  "$root/.venv/bin/python" - "$work/mla/train.py" <<'PY'
import ast, sys
path = sys.argv[1]
lines = open(path).read().splitlines()
cls = next(n for n in ast.parse("\n".join(lines)).body if isinstance(n, ast.ClassDef) and n.name == "Selection")
first = min([cls.lineno] + [d.lineno for d in cls.decorator_list])  # 1-based, decorator included
fence = ["# pragma: no mutate start"], ["# pragma: no mutate end"]
out = fence[0] + lines[:first - 1] + fence[1] + lines[first - 1:cls.end_lineno] + fence[0] + lines[cls.end_lineno:] + fence[1]
open(path, "w").write("\n".join(out) + "\n")
PY
fi

cd "$work"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
only=()
if [ -n "${MUTATION_ONLY:-}" ]; then mapfile -t only < <(grep -v '^\s*$' "$MUTATION_ONLY"); fi
"$root/.venv/bin/mutmut" run --max-children "$jobs" "${only[@]}" > mutmut-run.log 2>&1 || {
  echo "bench/mutation.sh: mutmut run failed; see $work/mutmut-run.log" >&2; tail -30 mutmut-run.log >&2; exit 1; }
"$root/.venv/bin/mutmut" results --all true > results.txt
"$root/.venv/bin/python" "$root/bench/mutation_score.py" results.txt "$root/bench/mutation_classified.txt" "${files[@]}"
