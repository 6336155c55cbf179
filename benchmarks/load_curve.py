"""Load curve: p50/p99 latency and throughput against concurrency (1..256 closed-loop clients)
through the real gateway, on a simulated engine that answers each judgment after a fixed latency
(a stand-in for a batched GPU judge). The gateway admits `--serve-limit` requests at once and queues
`--queue-limit` more: below that sum there must be no errors at all, above it the excess must be
clean 429s (our error shape, Retry-After) and every admitted request still answered.

    .venv/bin/python -m benchmarks.load_curve [--latency 0.05] [--per-client 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from benchmarks._common import RESULTS, machine, percentile, write_result
from benchmarks.simulated_server import simulated_gateway

LEVELS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


async def level(url: str, clients: int, per_client: int) -> dict:
    # aiohttp, not httpx: with hundreds of connections httpx's pool costs more CPU than the gateway
    # itself, and the load generator shares the machine's two cores with the gateway.
    import aiohttp

    ok: list[float] = []
    rejected = errors = 0
    clean_429 = True

    async def client(s: aiohttp.ClientSession, k: int) -> None:
        nonlocal rejected, errors, clean_429
        for i in range(per_client):
            body = {"query": f"Question {k}-{i}: which answer is better?",
                    "responses": [f"Answer A{i}", f"Answer B{k}"],
                    "votes": 1, "seed": k * 1000 + i, "cache": False}
            t0 = time.perf_counter()
            try:
                async with s.post(f"{url}/v1/judge/pairwise", json=body) as r:
                    payload = await r.json()
                    status = r.status
                    retry_after = "Retry-After" in r.headers
            except aiohttp.ClientError:
                errors += 1
                continue
            if status == 200:
                ok.append(time.perf_counter() - t0)
            elif status == 429:
                rejected += 1
                clean_429 &= retry_after and payload["error"]["code"] == 429
            else:
                errors += 1

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300)) as s:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(s, k) for k in range(clients)))
        wall = time.perf_counter() - t0
    return {"clients": clients, "requests": clients * per_client, "ok": len(ok), "rejected_429": rejected,
            "errors": errors, "clean_429": clean_429, "requests_per_s": round(len(ok) / wall, 1),
            "p50_ms": round(percentile(ok, 0.5) * 1e3, 1) if ok else None,
            "p99_ms": round(percentile(ok, 0.99) * 1e3, 1) if ok else None}


def run(latency: float = 0.05, per_client: int = 4, serve_limit: int = 64, queue_limit: int = 64,
        levels: tuple[int, ...] = LEVELS) -> dict:
    rows = []
    with simulated_gateway(latency, max_concurrent_requests=serve_limit, max_queued_requests=queue_limit) as url:
        asyncio.run(level(url, 4, 2))  # warm up
        for n in levels:
            row = asyncio.run(level(url, n, per_client))
            print(row, flush=True)
            rows.append(row)
    admitted = serve_limit + queue_limit
    below = [r for r in rows if r["clients"] <= admitted]
    return {"latency_s": latency, "serve_limit": serve_limit, "queue_limit": queue_limit, "rows": rows,
            "no_errors_below_limit": all(r["errors"] == 0 and r["rejected_429"] == 0 for r in below),
            "no_errors_at_all": all(r["errors"] == 0 for r in rows),
            "clean_429s": all(r["clean_429"] for r in rows)}


def plot(result: dict, path) -> None:  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if r["ok"]]
    x = [r["clients"] for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    ax[0].plot(x, [r["p50_ms"] for r in rows], "o-", label="p50")
    ax[0].plot(x, [r["p99_ms"] for r in rows], "s-", label="p99")
    ax[0].axhline(result["latency_s"] * 1e3, color="grey", ls=":", label="engine latency")
    ax[0].set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="latency (ms)")
    ax[0].legend()
    ax[1].plot(x, [r["requests_per_s"] for r in rows], "o-", label="answered")
    ax[1].plot(x, [r["rejected_429"] for r in rows], "x--", label="429s (count)")
    ax[1].axvline(result["serve_limit"] + result["queue_limit"], color="grey", ls=":", label="admission limit")
    ax[1].set(xscale="log", xlabel="concurrent clients", ylabel="requests/s")
    ax[1].legend()
    fig.suptitle(f"Load curve: gateway on a {result['latency_s'] * 1e3:.0f} ms engine")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--per-client", type=int, default=4)
    args = ap.parse_args()
    result = run(args.latency, args.per_client)
    out = write_result("load_curve", {"machine": machine(), **result,
                                      "command": "python -m benchmarks.load_curve " + " ".join(sys.argv[1:])})
    plot(result, RESULTS / "load_curve.png")
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
