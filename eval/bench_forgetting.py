"""Forgetting across rounds of new tools: memory tokens against LoRA fine-tuning.

Tools are learned in rounds (default: 4 rounds of 10 synthetic tools, split ``"eval"`` of
`agentmem.eval.corpus`, disjoint from the adaptation corpus). After every round, the
held-out requests of the *first* round's tools are planned and scored; forgetting is the
drop of their argument F1 from round 1 to the last round. Three learners, each fed only the
current round's examples:

* **agentmem**: `learn_tools` per round on the embedded backbone as `AgentMem` loads it
  (with its shipped adaptation); old rows stay bit-identical, new rows are renormalised to
  the mean norm of the old ones;
* **agentmem, no renormalisation**: the same with ``renormalize=False``;
* **LoRA fine-tuning**: one LoRA (r=8, alpha 32 on q/v, as the adaptation phase) on the
  plain backbone, trained round after round to write each call as text
  (``{"name":...,"arguments":{...}}``, one line per call) with no tool list in the prompt,
  no replay of earlier rounds; planned by greedy generation, lines parsed and validated.

Writes ``runs/forgetting-<date>.md`` (table, machine, command), ``.json`` (every figure)
and ``.png`` (first-round argument F1 after each round, one line per learner).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from agentmem.adaptation import AdaptConfig, inject_lora, train_lora
from agentmem.backbone import DEFAULT_BACKBONE, Backbone, load_backbone
from agentmem.core import AgentMem
from agentmem.encoding import EncodedExample, prompt_ids
from agentmem.eval.corpus import synthetic_examples, synthetic_tools
from agentmem.eval.metrics import score
from agentmem.tools.calls import InvalidToolCall
from agentmem.tools.parsing import canonical_json, parse_call
from agentmem.tools.spec import ToolSpec, to_tool_spec

LEARNERS = ("agentmem", "agentmem, no renormalisation", "LoRA fine-tuning")


@dataclass
class Task:
    """The tools of every round and their training and held-out requests."""

    rounds: list[list[str]]
    tools: dict[str, dict]
    train: dict[str, list[dict]]
    test: dict[str, list[dict]]


def make_task(rounds: int, per_round: int, n_train: int, n_test: int, seed: int) -> Task:
    """Draws the tools (split ``"eval"``) and, per tool, distinct training and test requests."""
    tools = synthetic_tools(rounds * per_round, seed, "eval")
    names = list(tools)
    train, test = {}, {}
    for name in names:
        train[name] = synthetic_examples([name], n_train, seed, "eval", multi=0.0)
        seen = {e["query"] for e in train[name]}
        pool = synthetic_examples([name], n_test + n_train, seed, "eval", multi=0.0, sample_seed=seed + 1)
        test[name] = [e for e in pool if e["query"] not in seen][:n_test]
    return Task([names[r * per_round : (r + 1) * per_round] for r in range(rounds)], tools, train, test)


def _scores(golds: Sequence[dict], predicted: Sequence[list[dict]], invalid: Sequence[int]) -> dict[str, float]:
    s = score([g["calls"] for g in golds], predicted, invalid)
    return {"tool_f1": s.tool_f1, "argument_f1": s.argument_f1}


def run_agentmem(task: Task, backbone: Backbone, renormalize: bool, epochs: int) -> list[dict[str, float]]:
    """Rounds of `learn_tools`; after each, the first round's held-out scores."""
    mem = AgentMem(backbone)
    first = [e for name in task.rounds[0] for e in task.test[name]]
    out = []
    for names in task.rounds:
        mem.learn_tools([(task.tools[n], task.train[n]) for n in names], epochs=epochs, renormalize=renormalize, progress=False)
        plans = mem.plan_batch([e["query"] for e in first])
        predicted = [[{"name": c.name, "arguments": c.arguments} for c in p.calls] for p in plans]
        out.append(_scores(first, predicted, [len(p.invalid_calls) for p in plans]))
        print(f"  {'renormalised' if renormalize else 'raw'} round {len(out)}: {out[-1]}", flush=True)
    return out


def _call_text(example: dict, specs: dict[str, ToolSpec]) -> str:
    return "\n".join(
        json.dumps({"name": c["name"], "arguments": json.loads(canonical_json(c["arguments"], specs[c["name"]].parameters))},
                   ensure_ascii=False, separators=(",", ":"))
        for c in example["calls"]
    )


def _parse_text(text: str, specs: dict[str, ToolSpec]) -> tuple[list[dict], int]:
    """Generated lines to valid calls; returns them and the number of invalid lines."""
    calls, invalid = [], 0
    for line in filter(None, (line.strip() for line in text.splitlines())):
        try:
            obj = json.loads(line)
            spec = specs[obj["name"]]
            result = parse_call(spec, json.dumps(obj["arguments"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            invalid += 1
            continue
        if isinstance(result, InvalidToolCall):
            invalid += 1
        else:
            calls.append({"name": result.name, "arguments": result.arguments})
    return calls, invalid


@torch.no_grad()
def _generate(backbone: Backbone, queries: Sequence[str], max_new_tokens: int, batch_size: int = 10) -> list[str]:
    tok = backbone.tokenizer
    texts = []
    for start in range(0, len(queries), batch_size):
        prompts = [prompt_ids(tok, q) for q in queries[start : start + batch_size]]
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[backbone.eos_token_id] * (width - len(p)) + p for p in prompts], device=backbone.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=backbone.device)
        out = backbone.model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
            pad_token_id=backbone.eos_token_id, eos_token_id=backbone.eos_token_id,
        )
        texts += tok.batch_decode(out[:, width:], skip_special_tokens=True)
    return texts


def run_lora(task: Task, base: Backbone, config: AdaptConfig) -> list[dict[str, float]]:
    """One LoRA fine-tuned round after round on the current round only; first-round scores."""
    import copy

    torch.manual_seed(config.seed)
    model = copy.deepcopy(base.model)
    inject_lora(model, config.lora())
    work = Backbone(name=base.name, model=model, tokenizer=base.tokenizer, fingerprint=base.fingerprint)
    specs = {name: to_tool_spec(t) for name, t in task.tools.items()}
    tok = base.tokenizer
    first = [e for name in task.rounds[0] for e in task.test[name]]
    out = []
    for r, names in enumerate(task.rounds):
        examples = [e for n in names for e in task.train[n]]
        encoded = [
            EncodedExample(
                prefix=tuple(prompt_ids(tok, e["query"])),
                target=(*tok(_call_text(e, specs), add_special_tokens=False)["input_ids"], base.eos_token_id),
            )
            for e in examples
        ]
        train_lora(work, None, encoded, AdaptConfig(**{**config.__dict__, "seed": config.seed + r}), desc=f"LoRA round {r + 1}")
        longest = max(len(e.target) for e in encoded)
        results = [_parse_text(t, specs) for t in _generate(work, [e["query"] for e in first], longest + 8)]
        out.append(_scores(first, [c for c, _ in results], [n for _, n in results]))
        print(f"  LoRA round {len(out)}: {out[-1]}", flush=True)
    return out


def plot(results: dict[str, list[dict[str, float]]], path: Path, title: str) -> None:
    """First-round argument F1 after each round, one line per learner."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for learner, rows in results.items():
        rounds = list(range(1, len(rows) + 1))
        ax.plot(rounds, [100 * r["argument_f1"] for r in rows], marker="o", label=learner)
    ax.set_xlabel("round (tools learned so far: round x tools per round)")
    ax.set_ylabel("argument F1 of round-1 tools (%)")
    ax.set_xticks(rounds)
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--tools-per-round", type=int, default=10)
    parser.add_argument("--train", type=int, default=15, help="training requests per tool")
    parser.add_argument("--test", type=int, default=5, help="held-out requests per tool")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of learn_tools per round")
    parser.add_argument("--lora-epochs", type=int, default=2, help="epochs of the LoRA baseline per round")
    parser.add_argument("--lora-lr", type=float, default=AdaptConfig.lr)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs"))
    args = parser.parse_args(argv)
    command = "python -m agentmem.eval.bench_forgetting " + shlex.join(sys.argv[1:] if argv is None else argv)

    started = time.perf_counter()
    task = make_task(args.rounds, args.tools_per_round, args.train, args.test, args.seed)
    base = load_backbone(args.backbone)
    adapted = AgentMem(args.backbone).backbone  # the shipped adaptation, where there is one
    results = {
        LEARNERS[0]: run_agentmem(task, adapted, True, args.epochs),
        LEARNERS[1]: run_agentmem(task, adapted, False, args.epochs),
        LEARNERS[2]: run_lora(task, base, AdaptConfig(epochs=args.lora_epochs, lr=args.lora_lr, progress=False)),
    }
    seconds = time.perf_counter() - started

    today = datetime.date.today().isoformat()
    machine = f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, {base.device}"
    adaptation = adapted.adapter.id if adapted.adapter is not None else "none"
    header = "| learner | " + " | ".join(f"after round {r + 1}" for r in range(args.rounds)) + " | drop (points) |"
    lines = [
        f"## Forgetting over {args.rounds} rounds of {args.tools_per_round} tools ({today}; {machine})",
        "",
        f"`{command}` on {args.backbone} (agentmem rows on adaptation {adaptation}), {args.train} training and "
        f"{args.test} held-out requests per tool; {seconds / 60:.0f} min in all. Argument F1 (tool F1) of the "
        f"first round's {args.tools_per_round * args.test} held-out requests after each round:",
        "",
        header,
        "|---" * (args.rounds + 2) + "|",
    ]
    for learner, rows in results.items():
        cells = [f"{100 * r['argument_f1']:.1f} ({100 * r['tool_f1']:.1f})" for r in rows]
        lines.append(f"| {learner} | {' | '.join(cells)} | {100 * (rows[0]['argument_f1'] - rows[-1]['argument_f1']):+.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"forgetting-{today}"
    with open(stem.with_suffix(".md"), "a") as f:
        f.write(text + "\n")
    stem.with_suffix(".json").write_text(json.dumps({"command": command, "machine": machine, "date": today, "results": results}, indent=2) + "\n")
    plot(results, stem.with_suffix(".png"), f"{args.backbone}: {args.rounds} rounds x {args.tools_per_round} tools ({today})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
