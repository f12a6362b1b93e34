"""Loopback load test of the OpenAI-compatible server: requests/s and latency by concurrency.

Starts the server of ``agentmem serve`` in this process on 127.0.0.1 (a free port) with one
bank: ``--bank PATH``, or the demo pack learned on the backbone as ``agentmem demo`` does
(4 tools from ``--examples-per-tool`` single-call examples each, plus two-call requests).
For each level of ``--clients`` (default 1, 4, 16), that many client threads send
``--requests`` chat completions in all (the demo pack's held-out requests in turn, plain HTTP
with the standard library, ``tool_choice`` auto, text answers cut at ``--max-tokens``),
after one warm-up request. Model calls are serialised by the server, so concurrency buys
queueing, not parallel decoding: latency grows with the clients.

Results print as a Markdown table (machine and date) and are appended to
``runs/server-<date>.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agentmem import runinfo
from agentmem.extras import missing_extra

try:
    import uvicorn
except ImportError as exc:  # a core install: say which extra to install, not only the module
    raise missing_extra("server", exc) from exc

from agentmem.adapters.server import BankRegistry, create_app
from agentmem.backbone import DEFAULT_BACKBONE
from agentmem.core import AgentMem
from agentmem.tools import demo

BANK = "demo"


def demo_bank(backbone: str, examples_per_tool: int) -> AgentMem:
    """The demo pack learned as `agentmem demo` learns it (``TrainConfig`` defaults)."""
    mem = AgentMem(backbone)
    pack = [(demo.TOOLS[name], demo.training_examples(name, n=examples_per_tool)) for name in demo.TOOLS]
    pack[0] = (pack[0][0], pack[0][1] + demo.multi_call_examples(n=2 * examples_per_tool))
    mem.learn_tools(pack, progress=False)
    return mem


@contextmanager
def serving(registry: BankRegistry) -> Iterator[str]:
    """Serves ``registry`` on a free loopback port from a thread; yields the base URL."""
    server = uvicorn.Server(uvicorn.Config(create_app(registry), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(600):  # at most 30 s
        if server.started:
            break
        time.sleep(0.05)
    else:
        raise RuntimeError("the server did not start within 30 s")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def post(url: str, body: dict[str, Any], timeout: float) -> tuple[float, bool]:
    """Sends one chat completion; returns (seconds, whether it succeeded with a 200)."""
    request = urllib.request.Request(
        url + "/v1/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            ok = response.status == 200 and "choices" in json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        ok = False
    return time.perf_counter() - started, ok


def load_level(
    url: str, queries: list[str], clients: int, requests: int, max_tokens: int, timeout: float
) -> dict[str, float]:
    """Sends ``requests`` completions from ``clients`` threads; returns throughput and latency."""
    bodies = [
        {"model": BANK, "messages": [{"role": "user", "content": queries[i % len(queries)]}], "max_tokens": max_tokens}
        for i in range(requests)
    ]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = list(pool.map(lambda body: post(url, body, timeout), bodies))
    wall = time.perf_counter() - started
    latencies = sorted(seconds for seconds, _ in results)
    p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
    return {
        "clients": clients,
        "requests": requests,
        "errors": sum(not ok for _, ok in results),
        "rps": requests / wall,
        "p50": statistics.median(latencies),
        "p95": p95,
        "wall": wall,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank", type=Path, help="a saved bank to serve (default: learn the demo pack)")
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE, help="backbone for the demo pack")
    parser.add_argument("--examples-per-tool", type=int, default=20, help="demo pack training examples per tool")
    parser.add_argument("--clients", default="1,4,16", help="concurrency levels, comma-separated")
    parser.add_argument("--requests", type=int, default=64, help="requests per level")
    parser.add_argument("--max-tokens", type=int, default=64, help="longest text answer, in tokens")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds one request may take")
    parser.add_argument("--out", type=Path, default=Path("runs"))
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.clients.split(",") if c]
    if min([args.requests, args.max_tokens, *levels]) < 1 or not levels:
        parser.error("--requests, --max-tokens and every --clients level must be >= 1")

    started = time.perf_counter()
    memory = AgentMem.load(args.bank) if args.bank else demo_bank(args.backbone, args.examples_per_tool)
    print(f"bank ready in {time.perf_counter() - started:.0f} s: {', '.join(memory.bank.names)}", flush=True)
    registry = BankRegistry()
    registry.add(BANK, memory)
    queries = [e["query"] for e in demo.held_out_examples()]
    rows = []
    with serving(registry) as url:
        post(url, {"model": BANK, "messages": [{"role": "user", "content": queries[0]}]}, args.timeout)  # warm-up
        for clients in levels:
            r = load_level(url, queries, clients, args.requests, args.max_tokens, args.timeout)
            rows.append(
                f"| {r['clients']} | {r['requests']} | {r['errors']} | {r['rps']:.2f} | "
                f"{r['p50'] * 1000:.0f} | {r['p95'] * 1000:.0f} | {r['wall']:.1f} |"
            )
            print(rows[-1], flush=True)

    machine = runinfo.machine(memory.backbone.device)
    today = datetime.date.today().isoformat()
    source = (
        f"bank {args.bank}"
        if args.bank
        else f"demo pack on {args.backbone}, {args.examples_per_tool} examples per tool"
    )
    lines = [
        f"## agentmem serve on loopback ({today}; {machine})",
        "",
        f"`python -m agentmem.adapters.bench_server --requests {args.requests} --clients {args.clients} "
        f"--max-tokens {args.max_tokens}`: {source}; one request = one chat completion of a held-out demo request "
        "(`tool_choice` auto).",
        "",
        "| clients | requests | errors | requests/s | p50 ms | p95 ms | wall s |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / f"server-{today}.md", "a") as f:
        f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
