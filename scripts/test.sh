#!/usr/bin/env bash
# One command from a fresh machine to the whole test suite (unit, property, and integration tests
# against the real vLLM CPU engine). Extra arguments go to pytest.
#   scripts/test.sh                 everything (the README's test command)
#   scripts/test.sh --fast [args]   the fast tier: no bundled model, no vLLM import, one pytest worker
#                                   per core when pytest-xdist is installed (tests/conftest.py says
#                                   what it leaves out)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${RRM_VENV:-.venv}"
PY="$VENV/bin/python"
fast=0
if [ "${1:-}" = "--fast" ]; then fast=1; shift; fi

if [ "$fast" = 1 ]; then
  # bootstrap.sh converts the bundled model unless RRM_MODEL names another; the fast tier needs
  # none (its tests inject the engine and use the vendored tokenizer files), so give it a name.
  RRM_MODEL="${RRM_MODEL:-none-for-the-fast-tier}" scripts/bootstrap.sh cpu,test
else
  scripts/bootstrap.sh cpu,test
fi

# Compiled bytecode (and pytest's rewritten test modules) kept in the venv, outside the tree, even
# where the environment sets PYTHONDONTWRITEBYTECODE: otherwise every pytest process (and every
# server process a test starts) compiles all of it again, ~8 s each here.
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac
export PYTHONPYCACHEPREFIX="${PYTHONPYCACHEPREFIX:-$VENV/pycache}"
unset PYTHONDONTWRITEBYTECODE

if [ "$fast" = 0 ]; then
  exec "$PY" -m pytest "$@"
fi
args=(--fast -p no:hydra_pytest)  # hydra-core's pytest plugin (a verl dependency) serves no test: ~1 s a process
if "$PY" -c 'import xdist' 2>/dev/null; then
  # Whole files per worker, so a module's server fixture starts once.
  args+=(-n "${RRM_TEST_WORKERS:-$(nproc)}" --dist loadfile)
else
  echo "pytest-xdist is not installed: the fast tier runs in one process (slower)" >&2
fi
exec "$PY" -m pytest "${args[@]}" "$@"
