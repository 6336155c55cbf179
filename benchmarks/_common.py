"""Shared benchmark helpers: machine facts, a real `rrm-server serve` subprocess, result files."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"  # the evaluation data beside the checkout (not part of the repo)
PANDALM = DATA / "pandalm" / "testset-v1.json"
GSM8K_BON = DATA / "gsm8k-bon" / "example_model_solutions.jsonl"
# run_all --smoke points this elsewhere so smoke runs never overwrite recorded results.
RESULTS = Path(os.environ.get("RRM_BENCH_RESULTS") or ROOT / "benchmarks" / "results")


def missing_data(*paths: Path) -> str | None:
    """None when every one of ``paths`` (files under DATA) exists; else why not, naming the folder."""
    if not DATA.is_dir():
        return f"benchmark data folder {DATA} not found (../shared/data beside the checkout)"
    absent = [str(p) for p in paths if not p.exists()]
    return f"benchmark data {', '.join(absent)} not found (in {DATA})" if absent else None


def machine() -> dict:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": round(mem, 1), "python": platform.python_version(),
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def real_server(*flags: str, env: dict | None = None, log: Path | None = None) -> Iterator[str]:
    """`rrm-server serve` on the bundled model; yields its URL once /ready is 200."""
    with server_process(*flags, env=env, log=log) as (url, _):
        yield url


@contextlib.contextmanager
def server_process(*flags: str, env: dict | None = None,
                   log: Path | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """Like ``real_server``, also yielding the process (its children are the vLLM engine)."""
    port = free_port()
    log = log or RESULTS / "server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "rrm_server", "serve", "--port", str(port), *flags],
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, log)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        with contextlib.suppress(ProcessLookupError):  # whatever the engine left in the group
            os.killpg(proc.pid, 9)


def stop_group(proc: subprocess.Popen, grace: float = 60) -> None:
    """SIGTERM a process started with ``start_new_session`` and its group, SIGKILL after ``grace`` s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 15)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait()


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 600) -> float:
    """Seconds until /ready is 200; raises if the server exits or never gets there."""
    started = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: see {log}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise RuntimeError("server not ready")
        time.sleep(0.5)


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def write_result(name: str, result: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2))
    return path
