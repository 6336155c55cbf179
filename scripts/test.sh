#!/usr/bin/env bash
# One command from a fresh machine to the whole test suite (unit, property, and integration tests
# against the real vLLM CPU engine). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh cpu,test
exec "${RRM_VENV:-.venv}/bin/python" -m pytest "$@"
