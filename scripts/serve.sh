#!/usr/bin/env bash
# One command from a fresh machine to a running service on the embedded default
# (bundled SmolLM2-135M judge, in-process vLLM on the CPU). Extra flags go to `rrm-server serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh cpu
exec "${RRM_VENV:-.venv}/bin/rrm-server" serve "$@"
