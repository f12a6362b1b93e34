"""Forgetting across rounds of new tools: memory tokens against LoRA fine-tuning.

Tools are learned in rounds (default: 4 rounds of 10 synthetic tools, split ``"eval"`` of
`agentmem.adaptation.corpus`, disjoint from the adaptation corpus). After every round, the
held-out requests of the *first* round's tools are planned and scored; forgetting is the
drop of their argument F1 from round 1 to the last round. Four learners, each fed the current
round's examples (and, for rehearsal, what the bank kept of earlier rounds):

* **agentmem**: `learn_tools` per round on the embedded backbone as `AgentMem` loads it
  (with its shipped adaptation), with its defaults: old rows stay bit-identical, new rows
  are renormalised to the mean norm of the old ones and trained on a few kept requests of
  the old tools too (rehearsal: the old rows stay frozen, the new ones learn where not to
  fire);
* **agentmem, no rehearsal**: the same with ``rehearse=0`` (the paper's method as stated);
* **agentmem, no renormalisation**: the defaults with ``renormalize=False``;
* **LoRA fine-tuning**: one LoRA (r=8, alpha 32 on q/v, as the adaptation phase) on the
  plain backbone, trained round after round by the adaptation phase's loop
  (`agentmem.adaptation.lora.train_lora`) to write the plan as text (``name {json}``, one line per
  call, the format of `agentmem.eval.textplan`, as the eval's LoRA baseline) with no tool
  list in the prompt, no replay of earlier rounds; planned by greedy generation
  (`agentmem.eval.generation.generate`), parsed and validated by `parse_plan`.

Writes ``runs/forgetting-<date>.md`` (table, machine, command), ``.json`` (every figure)
and ``.png`` (first-round argument F1 after each round, one line per learner).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from agentmem import runinfo
from agentmem.adaptation.corpus import synthetic_examples, synthetic_tools
from agentmem.adaptation.lora import LoRAConfig, lora_copy, train_lora
from agentmem.backbone import DEFAULT_BACKBONE, Backbone, load_backbone
from agentmem.core import AgentMem
from agentmem.encoding import EncodedExample, prompt_ids
from agentmem.eval.generation import generate
from agentmem.eval.metrics import score
from agentmem.eval.textplan import parse_plan, render_plan
from agentmem.tools.spec import to_tool_spec

#: Learner key -> its label and `learn_tools` settings (None: the LoRA baseline).
LEARNERS: dict[str, tuple[str, dict[str, Any] | None]] = {
    "agentmem": ("agentmem", {}),
    "no-rehearsal": ("agentmem, no rehearsal", {"rehearse": 0}),
    "no-renorm": ("agentmem, no renormalisation", {"renormalize": False}),
    "lora": ("LoRA fine-tuning", None),
}


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


def run_agentmem(task: Task, backbone: Backbone, label: str, **train: Any) -> list[dict[str, float]]:
    """Rounds of `learn_tools` with ``train`` settings; after each, the first round's held-out scores."""
    mem = AgentMem(backbone)
    first = [e for name in task.rounds[0] for e in task.test[name]]
    out = []
    for names in task.rounds:
        mem.learn_tools([(task.tools[n], task.train[n]) for n in names], progress=False, **train)
        plans = mem.plan_batch([e["query"] for e in first])
        predicted = [[{"name": c.name, "arguments": c.arguments} for c in p.calls] for p in plans]
        out.append(_scores(first, predicted, [len(p.invalid_calls) for p in plans]))
        print(f"  {label}, round {len(out)}: {out[-1]}", flush=True)
    return out


def run_lora(task: Task, base: Backbone, config: LoRAConfig) -> list[dict[str, float]]:
    """One LoRA fine-tuned round after round on the current round only; first-round scores."""
    work, _ = lora_copy(base, config)
    specs = {name: to_tool_spec(t) for name, t in task.tools.items()}
    schemas = {name: spec.parameters for name, spec in specs.items()}
    tok = base.tokenizer
    first = [e for name in task.rounds[0] for e in task.test[name]]
    prompts = [prompt_ids(tok, e["query"]) for e in first]
    out = []
    for r, names in enumerate(task.rounds):
        encoded = [
            EncodedExample(
                prefix=tuple(prompt_ids(tok, e["query"])),
                target=(
                    *tok(render_plan(e["calls"], schemas), add_special_tokens=False)["input_ids"],
                    base.eos_token_id,
                ),
            )
            for n in names
            for e in task.train[n]
        ]
        train_lora(work, None, encoded, replace(config, seed=config.seed + r), desc=f"LoRA round {r + 1}")
        longest = max(len(e.target) for e in encoded)
        parsed = [parse_plan(g.text, specs) for g in generate(work, prompts, max_new_tokens=longest + 8, batch_size=10)]
        # text with no attempted call counts as one invalid call
        out.append(
            _scores(first, [p.calls or [] for p in parsed], [len(p.invalid) + (p.calls is None) for p in parsed])
        )
        print(f"  LoRA round {len(out)}: {out[-1]}", flush=True)
    return out


def plot(results: dict[str, list[dict[str, float]]], path: Path, title: str) -> None:
    """First-round argument F1 and tool F1 after each round, one line per learner."""
    try:
        import matplotlib
    except ImportError as exc:  # a core install: say which extra to install, not only the module
        from agentmem.extras import missing_extra

        raise missing_extra("eval", exc) from exc

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    styles = [("o", "-"), ("s", "--"), ("^", ":"), ("D", "-."), ("v", "-")]
    for ax, metric, name in zip(axes, ("argument_f1", "tool_f1"), ("argument F1", "tool F1")):
        for i, (learner, rows) in enumerate(results.items()):
            marker, line = styles[i % len(styles)]
            rounds = list(range(1, len(rows) + 1))
            # lines that coincide stay visible: later ones are drawn thinner, with open markers
            ax.plot(
                rounds,
                [100 * r[metric] for r in rows],
                marker=marker,
                linestyle=line,
                label=learner,
                linewidth=2.5 - 0.4 * i,
                markersize=9 - i,
                markerfacecolor="none" if i else None,
            )
        ax.set_xlabel("round")
        ax.set_ylabel(f"{name} of round-1 tools (%)")
        ax.set_xticks(rounds)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--tools-per-round", type=int, default=10)
    parser.add_argument("--train", type=int, default=15, help="training requests per tool")
    parser.add_argument("--test", type=int, default=5, help="held-out requests per tool")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of learn_tools per round")
    parser.add_argument("--lora-epochs", type=int, default=2, help="epochs of the LoRA baseline per round")
    parser.add_argument(
        "--lora-lr",
        default=f"{LoRAConfig.lr:g},1e-3",
        help="learning rates of the LoRA baseline, comma-separated: one learner each",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--learners", default=",".join(LEARNERS), help=f"comma-separated, of: {', '.join(LEARNERS)}")
    parser.add_argument("--out", type=Path, default=Path("runs"))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    from agentmem.extras import require_extra

    require_extra("eval")  # the plot is drawn at the end: fail before an hour of training, not after
    command = runinfo.command("agentmem.eval.bench_forgetting", argv)
    learners = [name.strip() for name in args.learners.split(",")]
    unknown = [name for name in learners if name not in LEARNERS]
    if unknown:
        parser.error(f"unknown learners {unknown}; choose from: {', '.join(LEARNERS)}")
    lora_lrs = [float(lr) for lr in args.lora_lr.split(",")]

    today = runinfo.today()
    stem = args.out / f"forgetting-{today}"
    settings = {
        k: getattr(args, k) for k in ("backbone", "rounds", "tools_per_round", "train", "test", "epochs", "seed")
    }
    task = make_task(args.rounds, args.tools_per_round, args.train, args.test, args.seed)
    # (label, learn_tools settings or None for LoRA, LoRA learning rate), one per line of the table
    runs: list[tuple[str, dict[str, Any] | None, float]] = []
    for key in learners:
        label, train = LEARNERS[key]
        runs += [(f"{label} (lr {lr:g})", None, lr) for lr in lora_lrs] if train is None else [(label, train, 0.0)]
    # each backbone is loaded only when a learner needs it
    base = load_backbone(args.backbone) if any(train is None for _, train, _ in runs) else None
    adapted = (
        AgentMem(args.backbone).backbone if any(train is not None for _, train, _ in runs) else None
    )  # shipped adaptation
    device = (adapted or base).device
    machine = runinfo.machine(device)

    # Learners of an earlier run of the same task today are kept (each with its command), so
    # a long run can be split, or a baseline added, without re-running the rest.
    records: dict[str, dict[str, Any]] = {}
    if stem.with_suffix(".json").exists():
        earlier = json.loads(stem.with_suffix(".json").read_text())
        if earlier.get("task") == settings:
            records = earlier["learners"]
    for label, train, lr in runs:
        started = time.perf_counter()
        if train is None:
            rows = run_lora(task, base, LoRAConfig(epochs=args.lora_epochs, lr=lr, progress=False))
        else:
            rows = run_agentmem(task, adapted, label, epochs=args.epochs, **train)
        minutes = (time.perf_counter() - started) / 60
        records[label] = {"rounds": rows, "command": command, "machine": machine, "minutes": round(minutes, 1)}

    adapter = adapted.adapter if adapted is not None else None  # unknown in a run of LoRA alone
    adaptation = f" (agentmem rows on adaptation {adapter.id})" if adapter is not None else ""
    header = ["learner", *(f"after round {r + 1}" for r in range(args.rounds)), "drop (points)", "minutes"]
    table = []
    for learner, record in records.items():
        rows = record["rounds"]
        cells = [f"{100 * r['argument_f1']:.1f} ({100 * r['tool_f1']:.1f})" for r in rows]
        drop = 100 * (rows[0]["argument_f1"] - rows[-1]["argument_f1"])
        table.append([learner, *cells, f"{drop:+.1f}", record.get("minutes") or "n/a"])
    # No machine in the heading: learners kept from an earlier run may have run elsewhere,
    # so each names its own below.
    text = runinfo.record(
        runinfo.heading(f"Forgetting over {args.rounds} rounds of {args.tools_per_round} tools", today),
        f"{args.backbone}{adaptation}, {args.train} training and {args.test} held-out "
        f"requests per tool, seed {args.seed}. Argument F1 (tool F1) of the first round's "
        f"{args.tools_per_round * args.test} held-out requests after each round:",
        runinfo.table(header, table),
        "Commands and machines:",
        [f"- {learner}: `{record['command']}` ({record['machine']})" for learner, record in records.items()],
    )
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".md").write_text(text)
    stem.with_suffix(".json").write_text(
        json.dumps({"date": today, "task": settings, "learners": records}, indent=2) + "\n"
    )
    plot(
        {label: record["rounds"] for label, record in records.items()},
        stem.with_suffix(".png"),
        f"{args.backbone}: {args.rounds} rounds x {args.tools_per_round} tools ({today})",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
