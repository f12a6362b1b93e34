"""Loopback load test of the OpenAI-compatible server: throughput, latency, head-of-line.

Starts the server of ``agentmem serve`` in this process on 127.0.0.1 (a free port) with one
bank: ``--bank PATH``, or the demo pack learned on the backbone as ``agentmem demo`` does
(4 tools from ``--examples-per-tool`` single-call examples each, plus two-call requests).

1. Throughput: for each level of ``--clients`` (default 1 and 16), that many client threads
   send ``--requests`` chat completions in all (the demo pack's held-out requests in turn,
   plain HTTP with the standard library, ``tool_choice`` auto, text answers cut at
   ``--max-tokens``), after one warm-up request. The bank's scheduler decodes concurrent
   requests in one batch, so requests/s grows with clients. Every level must give each
   request the answer the first level gave it (calls, text, finish reason): checked, and
   counted as ``differ``. With ``--compare-drafts`` every level runs first with drafts off
   (``jump_forward`` and ``copy_drafts``: one forward pass per plan token), then with the
   defaults, and requests/s are compared level by level (the same answers, by construction:
   checked too).
2. Head-of-line: one short request alone (median of 3), then the same request sent while a
   long one (``tool_choice`` none, ``max_tokens`` ``--long-tokens``) decodes: sent once the
   long one has decoded 16 tokens, and checked to be answered while the long one still
   decodes; the ratio of the two times is what the long one costs the short one.

``--weights float32,bfloat16`` serves the bank on each of those backbone weights in turn
(`BankRegistry`'s ``weights``, as ``agentmem serve --weights``), both measurements each time,
and reports requests/s against the first weights' level by level, with how many answers differ
from the first weights' (other weights may plan otherwise: counted, not checked).

Results print as Markdown (machine and date, ratios measured in the same run) and are
appended to ``runs/server-<date>.md``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import statistics
import threading
import time
import urllib.error
import urllib.parse
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

from agentmem.adapters.server import BankRegistry, ServerLimits, create_app
from agentmem.backbone import DEFAULT_BACKBONE, WEIGHTS, parse_weights
from agentmem.core import AgentMem
from agentmem.scheduler import Scheduler
from agentmem.tools import demo

BANK = "demo"
#: Tokens the long request decodes before the short one is sent in the head-of-line probe.
_LONG_LEAD = 16


def demo_bank(backbone: str, examples_per_tool: int) -> AgentMem:
    """The demo pack learned as `agentmem demo` learns it (``TrainConfig`` defaults)."""
    mem = AgentMem(backbone)
    pack = [(demo.TOOLS[name], demo.training_examples(name, n=examples_per_tool)) for name in demo.TOOLS]
    pack[0] = (pack[0][0], pack[0][1] + demo.multi_call_examples(n=2 * examples_per_tool))
    mem.learn_tools(pack, progress=False)
    return mem


@contextmanager
def serving(registry: BankRegistry, limits: ServerLimits, decoding: dict[str, Any] | None = None) -> Iterator[str]:
    """Serves ``registry`` (with the operator's ``decoding`` options) on a free loopback port
    from a thread; yields the base URL."""
    app = create_app(registry, limits, decoding=decoding)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
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


def post(url: str, body: dict[str, Any], timeout: float) -> tuple[float, Any]:
    """Sends one chat completion; returns (seconds, its answer), the answer None unless a 200.

    The answer is what must not depend on load: calls, text, finish reasons, token counts.
    """
    request = urllib.request.Request(
        url + "/v1/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = json.loads(response.read()) if response.status == 200 else {}
    except (urllib.error.URLError, OSError, ValueError):
        data = {}
    seconds = time.perf_counter() - started
    if "choices" not in data:
        return seconds, None
    choice = data["choices"][0]
    calls = [(c["function"]["name"], c["function"]["arguments"]) for c in choice["message"].get("tool_calls") or ()]
    answer = (calls, choice["message"]["content"], choice["finish_reason"], data["agentmem"]["plan_finish_reason"])
    return seconds, (answer, data["usage"]["completion_tokens"])


def _body(query: str, max_tokens: int, **extra: Any) -> dict[str, Any]:
    return {"model": BANK, "messages": [{"role": "user", "content": query}], "max_tokens": max_tokens, **extra}


def load_level(
    url: str, queries: list[str], clients: int, requests: int, max_tokens: int, timeout: float
) -> tuple[dict[str, float], list[Any]]:
    """Sends ``requests`` completions from ``clients`` threads; returns throughput and
    latency, and each request's answer (None for a failed one)."""
    bodies = [_body(queries[i % len(queries)], max_tokens) for i in range(requests)]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = list(pool.map(lambda body: post(url, body, timeout), bodies))
    wall = time.perf_counter() - started
    latencies = sorted(seconds for seconds, _ in results)
    p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
    stats = {
        "clients": clients,
        "requests": requests,
        "errors": sum(answer is None for _, answer in results),
        "rps": requests / wall,
        "p50": statistics.median(latencies),
        "p95": p95,
        "wall": wall,
    }
    return stats, [answer for _, answer in results]


def head_of_line(
    url: str, scheduler: Scheduler, query: str, long_query: str, long_tokens: int, timeout: float
) -> dict[str, Any]:
    """A short request's seconds alone (median of 3) and while a long one decodes.

    The short one is sent only once the long one has decoded `_LONG_LEAD` tokens (the
    bank's scheduler, in this process, counts them: the long one decodes alone then), and
    the long one must still be decoding when the short one is answered, else the probe
    measured nothing and says so. The long one is sent on a connection of its own and
    dropped then: the server stops its decoding (a client gone), so the run does not wait
    out ``long_tokens`` steps it no longer measures.
    """
    alone = statistics.median(post(url, _body(query, 64), timeout)[0] for _ in range(3))
    host, port = urllib.parse.urlsplit(url).netloc.split(":")
    long = http.client.HTTPConnection(host, int(port), timeout=timeout)
    body = json.dumps(_body(long_query, long_tokens, tool_choice="none"))

    def send_long() -> None:
        try:
            long.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
            long.getresponse().read()
        except (OSError, http.client.HTTPException):
            pass  # dropped below, as intended

    before = scheduler.tokens
    thread = threading.Thread(target=send_long, daemon=True)
    thread.start()
    deadline = time.perf_counter() + timeout
    while scheduler.tokens - before < _LONG_LEAD and thread.is_alive() and time.perf_counter() < deadline:
        time.sleep(0.01)
    lead = scheduler.tokens - before  # tokens the long one decoded before the short one was sent
    beside = post(url, _body(query, 64), timeout)[0]
    decoding = thread.is_alive() and scheduler.running > 0  # the long one is still decoding
    if long.sock is not None:
        long.sock.shutdown(socket.SHUT_RDWR)
    long.close()
    thread.join(timeout)
    return {"alone": alone, "beside": beside, "ratio": beside / alone, "lead": lead, "overlapped": decoding}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank", type=Path, help="a saved bank to serve (default: learn the demo pack)")
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE, help="backbone for the demo pack")
    parser.add_argument("--examples-per-tool", type=int, default=20, help="demo pack training examples per tool")
    parser.add_argument("--clients", default="1,16", help="concurrency levels, comma-separated")
    parser.add_argument("--requests", type=int, default=64, help="requests per level")
    parser.add_argument("--max-tokens", type=int, default=64, help="longest text answer, in tokens")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds one request may take")
    parser.add_argument("--long-tokens", type=int, default=1024, help="the long request's max_tokens (0: skip)")
    parser.add_argument(
        "--long-query",
        # The demo bank answers this at length (past 150 tokens); the dragon story it used
        # to ask for ended after 66 tokens, before the short request was answered.
        default="Write a long essay about the history of bread, with many sections and details.",
        help="the long request (a text answer, tool_choice none)",
    )
    parser.add_argument(
        "--compare-drafts",
        action="store_true",
        help="also serve every level with drafts off (jump_forward and copy_drafts; the decoder before them) "
        "and report requests/s against it",
    )
    parser.add_argument(
        "--weights",
        default="float32",
        help=f"backbone weights to serve with (agentmem serve --weights), comma-separated: {', '.join(WEIGHTS)}; "
        "each is measured in turn and compared with the first",
    )
    parser.add_argument("--out", type=Path, default=Path("runs"))
    return parser


#: The decoding compared by ``--compare-drafts``: every plan token its own forward pass.
NO_DRAFTS = {"jump_forward": False, "copy_drafts": False}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.clients.split(",") if c]
    if min([args.requests, args.max_tokens, *levels]) < 1 or not levels or args.long_tokens < 0:
        parser.error("--requests, --max-tokens and every --clients level must be >= 1, --long-tokens >= 0")
    try:
        weights = parse_weights(args.weights)
    except ValueError as exc:
        parser.error(str(exc))

    started = time.perf_counter()
    memory = AgentMem.load(args.bank) if args.bank else demo_bank(args.backbone, args.examples_per_tool)
    print(f"bank ready in {time.perf_counter() - started:.0f} s: {', '.join(memory.bank.names)}", flush=True)
    queries = [e["query"] for e in demo.held_out_examples()]
    rows: list[list[str]] = []
    differ = 0
    first: dict[str, list[Any]] = {}  # each weights' answers at its first level
    limits = ServerLimits(max_text_tokens=max(1024, args.long_tokens))
    settings = [("no drafts", NO_DRAFTS), ("defaults", {})] if args.compare_drafts else [("defaults", {})]
    by_weights = len(weights) > 1
    rps: dict[tuple[str, str, int], float] = {}
    hol: dict[str, dict[str, Any]] = {}
    for weight in weights:
        registry = BankRegistry(weights=weight)
        registry.add(BANK, memory)  # switches the bank to these weights
        reference = None
        for label, decoding in settings:
            with serving(registry, limits, decoding) as url:
                post(url, _body(queries[0], args.max_tokens), args.timeout)  # warm-up
                for clients in levels:
                    r, answers = load_level(url, queries, clients, args.requests, args.max_tokens, args.timeout)
                    if reference is None:
                        reference = first[weight] = answers
                    r["differ"] = sum(a != b for a, b in zip(answers, reference))
                    differ += r["differ"]
                    rps[weight, label, clients] = r["rps"]
                    rows.append(
                        ([weight] if by_weights else [])
                        + ([label] if args.compare_drafts else [])
                        + [
                            str(r["clients"]),
                            str(r["requests"]),
                            str(r["errors"]),
                            str(r["differ"]),
                            f"{r['rps']:.2f}",
                            f"{r['p50'] * 1000:.0f}",
                            f"{r['p95'] * 1000:.0f}",
                            f"{r['wall']:.1f}",
                        ]
                    )
                    print(runinfo.table_row(rows[-1]), flush=True)
                if label == "defaults" and args.long_tokens:
                    hol[weight] = head_of_line(
                        url, memory.scheduler, queries[0], args.long_query, args.long_tokens, args.timeout
                    )

    today = runinfo.today()
    source = (
        f"bank {args.bank}"
        if args.bank
        else f"demo pack on {args.backbone}, {args.examples_per_tool} examples per tool"
    )
    base = weights[0]
    summary = f"Answers identical at every level: {'yes' if not differ else f'no ({differ} differ)'}."
    if args.compare_drafts:
        summary += " Requests/s with the default drafts / with none: " + ", ".join(
            f"{rps[base, 'defaults', c] / rps[base, 'no drafts', c]:.2f}x at {c} client{'s' * (c > 1)}" for c in levels
        )
        summary += f" ({base} weights)." if by_weights else "."
    if len(levels) > 1:
        summary += (
            f" Requests/s at {levels[-1]} clients / at {levels[0]}: "
            f"{rps[base, 'defaults', levels[-1]] / rps[base, 'defaults', levels[0]]:.2f}x"
            + (f" ({base} weights)." if by_weights else ".")
        )
    for weight in weights[1:]:
        changed = sum(a != b for a, b in zip(first[weight], first[base]))
        summary += (
            f" Requests/s with {weight} weights / with {base}: "
            + ", ".join(
                f"{rps[weight, 'defaults', c] / rps[base, 'defaults', c]:.2f}x at {c} client{'s' * (c > 1)}"
                for c in levels
            )
            + f"; {changed} of {args.requests} answers unlike {base}'s."
        )
    paragraphs: list[str | list[str]] = [
        runinfo.heading("agentmem serve on loopback", today, runinfo.machine(memory.backbone.device)),
        f"`{runinfo.command('agentmem.adapters.bench_server', argv)}`: {source}; one request = one chat "
        "completion of a held-out demo request (`tool_choice` auto); `differ` = answers unlike the first level's"
        + (" on the same weights." if by_weights else "."),
        runinfo.table(
            (["weights"] if by_weights else [])
            + (["decoding"] if args.compare_drafts else [])
            + ["clients", "requests", "errors", "differ", "requests/s", "p50 ms", "p95 ms", "wall s"],
            rows,
        ),
        summary,
    ]
    for weight, probe in hol.items():
        paragraphs.append(
            f"Head-of-line{f' ({weight} weights)' if by_weights else ''}: a short request ({queries[0]!r}) "
            f"takes {probe['alone'] * 1000:.0f} ms alone (median of 3) "
            f"and {probe['beside'] * 1000:.0f} ms sent while a text answer of up to {args.long_tokens} tokens "
            f"decodes (sent after the long one had decoded {probe['lead']} tokens; the long one "
            f"{'still decoding' if probe['overlapped'] else 'NO LONGER DECODING'} when it was answered): "
            f"ratio {probe['ratio']:.2f}."
        )
    runinfo.append_record(runinfo.record(*paragraphs), args.out / f"server-{today}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
