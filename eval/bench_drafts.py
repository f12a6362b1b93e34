"""Benchmark: forward passes and seconds per plan with drafts (`agentmem.decoding.drafts`).

The same requests are planned four ways: no drafts (one forward pass per chosen token),
``jump_forward`` alone, ``copy_drafts`` alone, and both (the default); each one request
at a time (`AgentMem.plan`) and all together (`AgentMem.plan_batch`). For each it reports
the decode passes (`Plan.usage`), the seconds, both as ratios to no drafts measured in the
same run, and every plan that differs from the no-drafts plan (drafts must change none).
It also splits a forward pass's time in two: the transformer body's, and the rest (the LM
head, the choice of tokens and the batch's bookkeeping: the decoder's own overhead).
With ``--attention agentmem_sdpa,sdpa`` it plans once more with transformers' own attention,
which copies grouped key/value heads (`agentmem.attention`), against the same baseline; with
``--weights float32,int8`` (or ``bfloat16``) once more on each planning weights
(`AgentMem.weights`), the plans that differ being those unlike the first weights' plans.

Requests: the demo pack's 40 held-out requests of draw 1 (a bank learned as ``agentmem
demo`` learns it, saved to ``--bank`` and loaded on later runs); or, with ``--dataset
bfcl-multi-turn``, the turns of BFCL's 12 dev conversations with their gold history
(``--turn-alone``: the turn's messages only), planned with a bank that ``bench_levers``
saved (``--bank``).

    python -m agentmem.eval.bench_drafts --bank runs/demo-bank
    python -m agentmem.eval.bench_drafts --dataset bfcl-multi-turn --turn-alone --bank runs/bfcl-bank
    python -m agentmem.eval.bench_drafts --bank runs/demo-bank --weights float32,int8
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agentmem import memory, runinfo
from agentmem.adaptation.adapter import shipped_adapter
from agentmem.adaptation.resolve import apply_adapter
from agentmem.attention import GROUPED_SDPA
from agentmem.backbone import DEFAULT_BACKBONE, load_backbone, parse_weights
from agentmem.chat import prompt_messages, read_turn
from agentmem.core import AgentMem, PlanOptions
from agentmem.eval.bench_decoding import learn_demo_pack
from agentmem.eval.record_plans import plan_record
from agentmem.tools import demo
from agentmem.tools.calls import Plan

#: A no-drafts row's decode passes, seconds and plans, which other rows compare with.
Baseline = tuple[int, float, list[Plan]]

#: The settings compared, the first the baseline.
SETTINGS: dict[str, PlanOptions] = {
    "no drafts": {"jump_forward": False, "copy_drafts": False},
    "jump_forward": {"jump_forward": True, "copy_drafts": False},
    "copy_drafts": {"jump_forward": False, "copy_drafts": True},
    "both (the default)": {"jump_forward": True, "copy_drafts": True},
}


class BodyClock:
    """Forward passes of the planner's transformer body and the seconds spent in them
    (forward hooks on the body of ``mem``'s planning backbone)."""

    def __init__(self, mem: AgentMem) -> None:
        body = memory.decoder(mem.backbone.with_weights(mem.weights))
        body.register_forward_pre_hook(self._start)
        body.register_forward_hook(self._stop)
        self.passes, self.seconds, self._started = 0, 0.0, 0.0

    def _start(self, *_: Any) -> None:
        self._started = time.perf_counter()

    def _stop(self, *_: Any) -> None:
        self.passes += 1
        self.seconds += time.perf_counter() - self._started

    def reset(self) -> None:
        self.passes, self.seconds = 0, 0.0


def measure(
    plan: Callable[[list[Any], PlanOptions], list[Plan]],
    requests: list[Any],
    repeats: int,
    clock: BodyClock,
    base: Baseline | None = None,
    prefix: str = "",
) -> tuple[list[list[str]], Baseline]:
    """One row per setting: passes, tokens, seconds, ratios to no drafts, a forward pass's
    milliseconds in the body and outside it (in the fastest run), plans that differ.
    Ratios and plans compare with ``base`` where given (an earlier call's no-drafts row),
    else with this call's no-drafts row, which it returns."""
    plan(requests[:1], SETTINGS["no drafts"])  # warm-up: grammars compiled, caches built
    rows = []
    base_passes, base_seconds, base_plans = base or (0, 0.0, [])
    for label, options in SETTINGS.items():
        seconds, split = [], []
        for _ in range(repeats):
            clock.reset()
            started = time.perf_counter()
            plans = plan(requests, options)
            seconds.append(time.perf_counter() - started)
            forwards = max(clock.passes, 1)
            split.append((clock.seconds / forwards, (seconds[-1] - clock.seconds) / forwards))
        best = min(seconds)
        body, rest = split[seconds.index(best)]
        passes = sum(p.usage["decode_passes"] for p in plans)
        tokens = sum(p.usage["generated_tokens"] for p in plans)
        if not base_plans:
            base_passes, base_seconds, base_plans = passes, best, plans
        differ = [i for i, (a, b) in enumerate(zip(base_plans, plans)) if plan_record(a) != plan_record(b)]
        rows.append(
            [
                prefix + label,
                passes,
                tokens,
                f"{passes / base_passes:.2f}",
                f"{best / len(requests):.3f}",
                f"{best / base_seconds:.2f}",
                f"{1000 * body:.1f}",
                f"{1000 * rest:.1f}",
                ", ".join(map(str, differ)) or "none",
            ]
        )
        print(runinfo.table_row(rows[-1]), flush=True)
    return rows, (base_passes, base_seconds, base_plans)


def demo_requests(args: argparse.Namespace) -> tuple[AgentMem, list[Any], str]:
    base = load_backbone(args.backbone)
    if (args.bank / "bank.json").exists():
        mem = AgentMem.load(args.bank, backbone=base)  # the bank carries its adapter
        source = f"bank loaded from {args.bank}"
    else:
        adapter = shipped_adapter(args.backbone)
        mem = AgentMem(apply_adapter(base, adapter) if adapter is not None else base)
        learn_demo_pack(mem)
        mem.save(args.bank)
        source = "the demo pack learned as `agentmem demo` learns it"
    requests = [ex["query"] for ex in demo.held_out_examples(seed=1)]
    return mem, requests, f"{source}; the demo pack's {len(requests)} held-out requests (draw 1)"


def bfcl_requests(args: argparse.Namespace) -> tuple[AgentMem, list[Any], str]:
    from agentmem.eval.agent import training_turns
    from agentmem.eval.bfcl import load_bfcl, split_conversations

    if not (args.bank / "bank.json").exists():
        raise SystemExit(f"--bank {args.bank}: no saved bank there (bench_levers --bank saves one)")
    mem = AgentMem.load(args.bank, backbone=load_backbone(args.backbone))
    data = load_bfcl()
    _, dev, _ = split_conversations(data.conversations, args.seed)
    turns = training_turns(dev, data, context=not args.turn_alone)
    mode = "turn alone" if args.turn_alone else "with the gold conversation before it"
    # as a front end sends them: earlier calls to tools the bank lacks written as text
    known = set(mem.bank.names)
    return (
        mem,
        [
            prompt_messages(
                [read_turn(m["role"], m.get("content"), m.get("tool_calls") or ()) for m in t["messages"]], known
            )
            for t in turns
        ],
        f"bank {args.bank}; {len(turns)} turns of BFCL's 12 dev conversations, {mode}",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["demo", "bfcl-multi-turn"], default="demo")
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    parser.add_argument("--bank", type=Path, required=True, help="bank folder (demo: learned there if missing)")
    parser.add_argument("--turn-alone", action="store_true", help="bfcl-multi-turn: each turn's messages only")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each setting (the fastest is reported)")
    parser.add_argument(
        "--modes", default="plan,plan_batch", help="plan (one request at a time), plan_batch, or both (comma-separated)"
    )
    parser.add_argument(
        "--attention",
        default=GROUPED_SDPA,
        help=f"attention implementations to plan with, each a block of rows, ratios to the first's no-drafts row "
        f"(comma-separated; {GROUPED_SDPA}, the default: grouped key/value heads read in place; sdpa: "
        "transformers' own, which copies them)",
    )
    parser.add_argument(
        "--weights",
        default="float32",
        help="backbone weights to plan with, each a block of rows, ratios to the first's no-drafts row "
        "(comma-separated: float32, int8, bfloat16; AgentMem.weights)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs"))
    args = parser.parse_args(argv)
    attentions = args.attention.split(",")
    try:
        weights = parse_weights(args.weights)
    except ValueError as exc:
        parser.error(str(exc))
    chosen = args.modes.split(",")
    for name in chosen:  # before the bank loads, which takes a while
        if name not in ("plan", "plan_batch"):
            parser.error(f"--modes: {name!r} is neither plan nor plan_batch")

    mem, requests, source = (bfcl_requests if args.dataset == "bfcl-multi-turn" else demo_requests)(args)
    print(source, flush=True)
    header = [
        "drafts",
        "decode passes",
        "tokens",
        "passes / no drafts",
        "s / request",
        "s / no drafts",
        "ms / forward pass: body",
        "ms / forward pass: the rest",
        "plans that differ",
    ]
    modes = {
        "plan": ("one request at a time (`plan`)", lambda reqs, options: [mem.plan(r, **options) for r in reqs]),
        "plan_batch": ("all together (`plan_batch`)", lambda reqs, options: mem.plan_batch(reqs, **options)),
    }
    sections = []
    for name in chosen:
        mode, plan = modes[name]
        print(f"{mode}:", flush=True)
        rows, base = [], None
        for weight in weights:
            mem.weights = weight
            clock, model = BodyClock(mem), mem.backbone.with_weights(weight).model
            for attention in attentions:
                model.set_attn_implementation(attention)
                labels = ([weight] if len(weights) > 1 else []) + ([attention] if len(attentions) > 1 else [])
                prefix = "".join(f"{label}: " for label in labels)
                block, base = measure(plan, requests, args.repeats, clock, base, prefix)
                rows += block
        sections += [f"{mode}:", runinfo.table(header, rows)]
    today = runinfo.today()
    text = runinfo.record(
        runinfo.heading(f"Drafts on {args.dataset}", today, runinfo.machine(mem.backbone.device)),
        f"`{runinfo.command('agentmem.eval.bench_drafts', argv)}`: {source}.",
        *sections,
    )
    runinfo.append_record(text, args.out / f"drafts-{today}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
