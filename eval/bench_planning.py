"""Benchmark: the cost of planning with memory tokens against prompt-based function calling.

Banks of 10, 40 and 100 learned tools on the embedded backbone; for each, the same
requests (held-out demo requests, one call each) are planned three ways:

* **agentmem**: the request alone is prefilled; the model routes among memory tokens and
  writes schema-constrained arguments (`AgentMem.plan`);
* **prompt**: prompt-based function calling of the same backbone: every tool's schema in
  the system prompt (compact JSON, one line per tool), the request, then greedy decoding
  of ``{"name": ..., "arguments": {...}}`` until end of turn;
* **prompt, cached tools**: the same, with the system prompt's key/value cache computed
  once and reused by every request (what a serving engine's prefix cache gives at best):
  only the request is prefilled, but every decoding step still attends over the tool list.

It also measures the cost of grammar-constrained argument decoding per generated token
against unconstrained decoding (same bank, same requests).

The 4 demo tools are learned from 20 examples each; the other tools are generated
(`filler_tools`) and learned from a few examples each, so every bank holds real trained
rows. Banks of 10 and 40 are the bank of 100 with tools forgotten (rows of the kept tools
are unchanged by `forget`).
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import DynamicCache

from agentmem import runinfo
from agentmem.backbone import cache_argument, returned_cache
from agentmem.core import AgentMem
from agentmem.encoding import chat_text
from agentmem.tools import demo

_NOUNS = [
    "invoice",
    "flight",
    "hotel_room",
    "meeting",
    "order",
    "ticket",
    "playlist",
    "recipe",
    "parcel",
    "account",
    "contract",
    "course",
    "car_rental",
    "prescription",
    "appointment",
    "subscription",
    "expense",
    "shift",
    "lead",
    "warehouse_item",
]
_VERBS = ["get", "create", "cancel", "update", "search"]
_FIELDS = [
    ("reference", {"type": "string", "description": "Reference code, e.g. 'AB-1234'."}),
    ("date", {"type": "string", "description": "Date as YYYY-MM-DD."}),
    ("quantity", {"type": "integer", "minimum": 1, "description": "How many."}),
    ("priority", {"type": "string", "enum": ["low", "normal", "high"], "description": "Urgency."}),
    ("owner", {"type": "string", "description": "Person responsible, full name."}),
    ("notify", {"type": "boolean", "description": "Whether to notify the owner."}),
]


def filler_tools(n: int, seed: int = 0) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """``n`` generated tools (verb_noun, 2-4 typed parameters), each with 3 examples."""
    rng = random.Random(seed)
    names = [f"{verb}_{noun}" for noun in _NOUNS for verb in _VERBS]
    if n > len(names):
        raise ValueError(f"at most {len(names)} filler tools, asked for {n}")
    tools = []
    for name in names[:n]:
        fields = rng.sample(_FIELDS, rng.randint(2, 4))
        schema = {
            "name": name,
            "description": f"{name.split('_')[0].capitalize()} a {' '.join(name.split('_')[1:])} record.",
            "parameters": {"type": "object", "properties": dict(fields), "required": [fields[0][0]]},
        }
        examples = []
        for i in range(3):
            value = {
                "reference": f"{chr(65 + i)}{rng.randint(10, 99)}-{rng.randint(1000, 9999)}",
                "date": f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            }
            key = fields[0][0]
            if key in value:
                arguments = {key: value[key]}
                query = f"{name.replace('_', ' ')} with {key} {value[key]}"
            elif key == "quantity":
                arguments = {key: rng.randint(1, 9)}
                query = f"{name.replace('_', ' ')}, quantity {arguments[key]}"
            elif key == "priority":
                arguments = {key: rng.choice(["low", "normal", "high"])}
                query = f"{name.replace('_', ' ')} at {arguments[key]} priority"
            elif key == "owner":
                arguments = {key: rng.choice(["Ana Silva", "Li Wei", "Omar Haddad", "Jane Doe"])}
                query = f"{name.replace('_', ' ')} owned by {arguments[key]}"
            else:
                arguments = {key: rng.random() < 0.5}
                query = f"{name.replace('_', ' ')} and {'do' if arguments[key] else 'do not'} notify"
            examples.append({"query": query[0].upper() + query[1:], "arguments": arguments})
        tools.append((schema, examples))
    return tools


def system_prompt(tools: list[dict[str, Any]]) -> str:
    """The prompt-based baseline's instructions: one compact JSON schema per line."""
    lines = [
        json.dumps(
            {"name": t["name"], "description": t["description"], "parameters": t["parameters"]}, separators=(",", ":")
        )
        for t in tools
    ]
    return (
        "You can call these tools:\n" + "\n".join(lines) + "\n"
        'To call a tool, reply only with {"name": <tool name>, "arguments": <arguments object>}, '
        "one call per line."
    )


@dataclass
class Measured:
    prompt_tokens: float
    seconds: float
    generated_tokens: float
    correct_tool: float


@torch.no_grad()
def prompt_based(
    mem: AgentMem,
    tools: list[dict[str, Any]],
    requests: list[dict[str, Any]],
    cached_tools: bool,
    max_new_tokens: int = 64,
) -> Measured:
    """Plans each request by prompting with every schema; greedy, one request at a time."""
    backbone = mem.backbone
    tokenizer, model = backbone.tokenizer, backbone.model
    system = system_prompt(tools)
    prefix_ids = _ids(tokenizer, [{"role": "system", "content": system}], generation_prompt=False)
    prefix_cache = None
    if cached_tools:  # computed once, outside the timed region, as a prefix cache would be
        prefix_cache = returned_cache(
            model(
                input_ids=torch.tensor([prefix_ids]),
                use_cache=True,
                **cache_argument(model, DynamicCache(config=model.config)),
            )
        )
    prompts, seconds, generated, correct = [], [], [], []
    for request in requests:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": request["query"]}]
        ids = _ids(tokenizer, messages, generation_prompt=True)
        assert ids[: len(prefix_ids)] == prefix_ids, "the system turn must be a token prefix of the prompt"
        started = time.perf_counter()
        kwargs: dict[str, Any] = {}
        if prefix_cache is not None:
            kwargs.update(cache_argument(model, copy.deepcopy(prefix_cache)))
        out = model.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=backbone.eos_token_id,
            **kwargs,
        )
        seconds.append(time.perf_counter() - started)
        new = out[0, len(ids) :].tolist()
        text = tokenizer.decode(new, skip_special_tokens=True)
        prompts.append(len(ids) - (len(prefix_ids) if cached_tools else 0))
        generated.append(len(new))
        correct.append(float(f'"{request["calls"][0]["name"]}"' in text))
    return Measured(
        statistics.mean(prompts), statistics.median(seconds), statistics.mean(generated), statistics.mean(correct)
    )


def _ids(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> list[int]:
    text = chat_text(tokenizer, messages, add_generation_prompt=generation_prompt)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def memory_tokens(mem: AgentMem, requests: list[dict[str, Any]], constrained: bool = True) -> Measured:
    """Plans each request with memory tokens, one at a time (as the prompt baseline)."""
    plans = [mem.plan(r["query"], constrained=constrained) for r in requests]
    return Measured(
        statistics.mean(p.usage["prompt_tokens"] for p in plans),
        statistics.median(p.timings["total"] for p in plans),
        statistics.mean(p.usage["generated_tokens"] for p in plans),
        statistics.mean(
            float(bool(p.calls) and p.calls[0].name == r["calls"][0]["name"]) for p, r in zip(plans, requests)
        ),
    )


def seconds_per_token(mem: AgentMem, requests: list[dict[str, Any]], constrained: bool, repeats: int = 3) -> float:
    """Decoding seconds per generated token (prefill excluded), best of ``repeats``."""
    best = float("inf")
    for _ in range(repeats):
        plans = [mem.plan(r["query"], constrained=constrained, tool_choice="any") for r in requests]
        best = min(best, sum(p.timings["decode"] for p in plans) / sum(p.usage["generated_tokens"] for p in plans))
    return best


def bench_planning(
    backbone: str = "smollm2-135m", sizes: tuple[int, ...] = (10, 40, 100), n_requests: int = 8, epochs: int = 3
) -> dict[str, Any]:
    """Runs the whole benchmark; returns its figures (see module docstring)."""
    largest = max(sizes)
    mem = AgentMem(backbone)
    demo_pack = [(demo.TOOLS[name], demo.training_examples(name)) for name in demo.TOOLS]
    fillers = filler_tools(largest - len(demo_pack))
    report = mem.learn_tools(demo_pack + fillers, epochs=epochs)
    # Single-call held-out requests, two per demo tool (their templates never seen in training).
    held = [ex for ex in demo.held_out_examples() if len(ex["calls"]) == 1]
    requests = [ex for name in demo.TOOLS for ex in [e for e in held if e["calls"][0]["name"] == name][:2]][:n_requests]
    all_tools = [spec for spec, _ in demo_pack + fillers]

    rows = []
    for size in sorted(sizes, reverse=True):
        for name in [t["name"] for t in all_tools[size:] if t["name"] in mem.bank.names]:
            mem.forget(name)
        tools = all_tools[:size]
        mem.plan(requests[0]["query"])  # warm-up
        rows.append(
            {
                "tools": size,
                "agentmem": memory_tokens(mem, requests).__dict__,
                "prompt": prompt_based(mem, tools, requests, cached_tools=False).__dict__,
                "prompt_cached": prompt_based(mem, tools, requests, cached_tools=True).__dict__,
            }
        )
        if size == min(sizes):
            constrained = seconds_per_token(mem, requests, constrained=True)
            unconstrained = seconds_per_token(mem, requests, constrained=False)
    return {
        "training": str(report),
        "requests": len(requests),
        "rows": sorted(rows, key=lambda r: r["tools"]),
        "constrained_s_per_token": constrained,
        "unconstrained_s_per_token": unconstrained,
    }


def markdown(result: dict[str, Any]) -> str:
    """The figures as Markdown tables with ratios against the prompt-based baseline."""
    header = (
        "tools | method | prompt tokens / request | latency / plan (s) | generated tokens | right tool "
        "| prompt tokens vs agentmem | latency vs agentmem"
    ).split(" | ")
    body = []
    for row in result["rows"]:
        ours = row["agentmem"]
        for key, label in (
            ("agentmem", "agentmem (memory tokens)"),
            ("prompt", "prompt-based (schemas in prompt)"),
            ("prompt_cached", "prompt-based, tool prefix cached"),
        ):
            m = row[key]
            body.append(
                [
                    row["tools"],
                    label,
                    f"{m['prompt_tokens']:.0f}",
                    f"{m['seconds']:.2f}",
                    f"{m['generated_tokens']:.1f}",
                    f"{m['correct_tool']:.2f}",
                    f"{m['prompt_tokens'] / ours['prompt_tokens']:.1f}x",
                    f"{m['seconds'] / ours['seconds']:.1f}x",
                ]
            )
    lines = [
        f"{result['requests']} held-out single-call requests per bank; medians of per-request latency.",
        "",
        *runinfo.table(header, body),
    ]
    latencies = [r["agentmem"]["seconds"] for r in result["rows"]]
    c, u = result["constrained_s_per_token"], result["unconstrained_s_per_token"]
    lines += [
        "",
        f"agentmem latency from {result['rows'][0]['tools']} to {result['rows'][-1]['tools']} tools: "
        f"{latencies[0]:.2f} s -> {latencies[-1]:.2f} s ({(latencies[-1] / latencies[0] - 1) * 100:+.0f}%).",
        f"Decoding per generated token: constrained {c * 1000:.1f} ms, unconstrained {u * 1000:.1f} ms "
        f"({(c / u - 1) * 100:+.1f}% for the grammar).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="smollm2-135m")
    parser.add_argument("--sizes", default="10,40,100", help="bank sizes, comma-separated")
    parser.add_argument("--requests", type=int, default=8, help="held-out requests planned per bank")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("runs"))
    args = parser.parse_args(argv)

    sizes = tuple(int(s) for s in args.sizes.split(","))
    result = bench_planning(args.backbone, sizes, args.requests, args.epochs)
    today = runinfo.today()
    text = runinfo.record(
        runinfo.heading("Planning cost against prompt-based function calling", today, runinfo.machine()),
        f"`{runinfo.command('agentmem.eval.bench_planning', argv)}` on {args.backbone}; training: {result['training']}.",
        markdown(result),
    )
    runinfo.append_record(text, args.out / f"planning-{today}.md")
    (args.out / f"planning-{today}.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
