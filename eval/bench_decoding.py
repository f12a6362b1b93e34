"""Decoding levers on the demo pack's held-out requests: an ablation, with the plans printed.

The memory tokens are learned once, exactly as ``agentmem demo`` learns them (4 demo tools
x 20 single-call examples plus 40 two-call requests, `TrainConfig` defaults), on the
embedded backbone with its shipped adaptation (or ``--adapter``, or ``--plain``). Then the
same 40 held-out requests (32 single-call, 8 two-call; templates and values never seen in
training) are planned once per setting of the decoding levers, so every difference between
rows comes from decoding alone; so are 20 requests that need no tool
(`demo.NO_TOOL_REQUESTS`), of which the table counts those answered in words:

* ``copy_bias`` (copy-aware decoding, `agentmem.copying`): the ``--copy-bias`` values;
* ``drop_unfounded`` (optional arguments whose values are not in the request are left out,
  `agentmem.copying.unfounded_optional`): ``--drop-unfounded`` off, on or both;
* ``reroute_unfounded`` (a call holding a value the request does not makes the decoder try
  the next likeliest tools at that routing decision, `agentmem.decoding.policies.Reroute`):
  ``--reroute`` off, on or both;
* ``complete_plan`` (before a plan ends, the likeliest next tool's call is decoded and
  kept when all its values are in the request and one is new to the plan,
  `agentmem.decoding.policies.CompletePlan`): ``--complete-plan`` off, on or both;
* ``fall_back_to_text`` (at the plan's start, words or a call from the routing
  probabilities, `agentmem.decoding.policies.FallBackToText`): ``--fall-back-to-text`` off,
  on or both;
* ``route_by_last_turn`` (a conversation's first call goes to the tool its last user
  message alone routes to): ``--route-by-last-turn`` off, on or both (the demo pack's
  requests are single messages, so it changes nothing there);
* ``unique_enum_items`` (an array argument of enum strings never holds a value twice):
  ``--unique-enum-items`` off, on or both;
* ``strip_leading_space`` (the whitespace a string value starts with is dropped from the
  call): ``--strip-leading-space`` off, on or both;
* ``optional_bias`` (a bonus to writing one more argument while an optional property is
  unwritten; what the request does not hold, or repeats another argument, is then left
  out): the ``--optional-bias`` values.

Each lever defaults to the library's own default (`DecodeSettings`), so the bench with no
lever flag plans as `AgentMem.plan` does; an ablation names the values to try.

``--weights float32,int8`` plans every setting once per backbone weights (`AgentMem.weights`:
float32, or int8 by dynamic quantization on CPU) with the same bank, learned in float32, and
lists each request whose plan differs from the first weights' plan.

The result-reference guard and the runaway-string guard are invariants, not levers: they
are on in every row. Prints a Markdown table and, for the first and the best row, a dozen
plans beside their gold calls; appends both to ``runs/decoding-<date>.md``.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path
from typing import Any, cast

from agentmem import runinfo
from agentmem.adaptation.adapter import Adapter, shipped_adapter
from agentmem.adaptation.resolve import apply_adapter
from agentmem.backbone import DEFAULT_BACKBONE, WEIGHTS, load_backbone, parse_weights
from agentmem.core import AgentMem, PlanOptions
from agentmem.decoding import DecodeSettings
from agentmem.decoding.settings import LEVERS as LEVER_OPTIONS
from agentmem.eval.metrics import Scores, score
from agentmem.tools import demo
from agentmem.tools.calls import Plan
from agentmem.training import LR_SCHEDULES, TrainConfig


def learn_demo_pack(mem: AgentMem, examples_per_tool: int = 20, multi: int = 40, **train: Any) -> Any:
    """Learns the demo pack into ``mem`` as ``agentmem demo`` does; ``train``: `TrainConfig`
    fields that differ from its defaults (``seed``, ``bf16``, ``averaged_runs``,
    ``lr_schedule``); returns the report."""
    pack = [(demo.TOOLS[name], demo.training_examples(name, n=examples_per_tool)) for name in demo.TOOLS]
    pack[0] = (pack[0][0], pack[0][1] + demo.multi_call_examples(n=multi))
    return mem.learn_tools(pack, progress=False, **train)


def score_plans(held: list[dict], plans: list[Plan]) -> dict[str, Scores]:
    """Scores plans of the held-out requests: all, single-call and two-call."""
    predicted = [[{"name": c.name, "arguments": c.arguments} for c in p.calls] for p in plans]
    invalid = [len(p.invalid_calls) for p in plans]
    out = {}
    for part, keep in [
        ("all", lambda e: True),
        ("single", lambda e: len(e["calls"]) == 1),
        ("two-call", lambda e: len(e["calls"]) == 2),
    ]:
        idx = [i for i, e in enumerate(held) if keep(e)]
        out[part] = score([held[i]["calls"] for i in idx], [predicted[i] for i in idx], [invalid[i] for i in idx])
    return out


def show_plans(held: list[dict], plans: list[Plan], n: int = 12) -> str:
    """The first ``n`` plans beside their gold calls, marked right or wrong, then every other wrong one."""
    lines, rest_header = [], False
    for i, (example, plan) in enumerate(zip(held, plans)):
        got = [{"name": c.name, "arguments": c.arguments} for c in plan.calls]
        right = got == example["calls"] and not plan.invalid_calls
        if i >= n and right:
            continue
        if i >= n and not rest_header:
            lines.append(f"- ... and the wrong ones among the other {len(held) - n}:")
            rest_header = True
        mark = "ok " if right else "BAD"
        calls = "; ".join(f"{c['name']}({c['arguments']})" for c in got) or "(no call)"
        extra = "".join(f" INVALID {c.name}: {c.reason}" for c in plan.invalid_calls)
        gold = "; ".join(f"{c['name']}({c['arguments']})" for c in example["calls"])
        lines.append(f"- {mark} {example['query']!r}\n    got  {calls}{extra}\n    gold {gold}")
    return "\n".join(lines)


def show_answers(plans: list[Plan]) -> str:
    """What each request that needs no tool got: the answer in words, or the calls made."""
    lines = []
    for request, plan in zip(demo.NO_TOOL_REQUESTS, plans):
        calls = "; ".join(f"{c.name}({c.arguments})" for c in plan.calls)
        if calls or plan.invalid_calls:
            lines.append(f"- BAD {request!r}\n    got  {calls or plan.invalid_calls[0].reason}")
        else:
            lines.append(f"- ok  {request!r}\n    said {plan.text[:100]!r}")
    return "\n".join(lines)


#: The decoding levers (`agentmem.decoding.LEVERS`), in the table's order: the `PlanOptions`
#: key, the flag naming the values to try, and the name in a row's label. A switch's values
#: are off/on; a number's, comma-separated numbers.
_SHORT = {"reroute_unfounded": "reroute"}  # the label BENCHMARKS has always used
LEVERS: tuple[tuple[str, str, str], ...] = tuple(
    (name, "--" + _SHORT.get(name, name).replace("_", "-"), _SHORT.get(name, name)) for name in LEVER_OPTIONS
)
_SWITCH = {False: "off", True: "on"}
#: ``--bf16``'s values: `TrainConfig.bf16`.
_PRECISION: dict[str, bool | None] = {"native": None, "on": True, "off": False}


def _values(text: str, switch: bool) -> list[Any]:
    """The values to try, from a flag's comma-separated text."""
    if switch:
        return [{"off": False, "on": True}[v.strip()] for v in text.split(",")]
    return [float(v) for v in text.split(",") if v.strip()]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    parser.add_argument("--adapter", type=Path, help="adapter folder (default: the one shipped for the backbone)")
    parser.add_argument("--plain", action="store_true", help="the plain backbone, no adaptation")
    library = DecodeSettings()
    for option, flag, _ in LEVERS:
        default = getattr(library, option)
        if isinstance(default, bool):
            parser.add_argument(
                flag, dest=option, default=_SWITCH[default], help=f"{option} settings to try: off, on or off,on"
            )
        else:
            zero = "; 0 is off" if option == "copy_bias" else ""
            parser.add_argument(
                flag, dest=option, default=f"{default:g}", help=f"{option} values to try (comma-separated{zero})"
            )
    parser.add_argument(
        "--bank",
        type=Path,
        help="bank folder: loaded if it exists (a saved bank plans as the live one), else learned and saved there",
    )
    parser.add_argument(
        "--bf16",
        choices=list(_PRECISION),
        default="off",
        help="learning precision (TrainConfig.bf16): off (float32, the library's default), on "
        "(bfloat16 autocast), or native (on where the hardware has bfloat16); planning is float32 either way",
    )
    parser.add_argument(
        "--learn-seed", type=int, default=0, help="seed of learning (0: as agentmem demo learns); another bank"
    )
    parser.add_argument(
        "--averaged-runs", type=int, default=1, help="runs averaged into the rows (TrainConfig.averaged_runs)"
    )
    parser.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        default=TrainConfig.lr_schedule,
        help="the rows' learning-rate schedule (TrainConfig.lr_schedule)",
    )
    parser.add_argument(
        "--held-seed",
        type=int,
        default=1,
        help="seed of the held-out draw (1: the set BENCHMARKS reports; 2: a second one)",
    )
    parser.add_argument(
        "--weights",
        default="float32",
        help=f"backbone weights to plan with (AgentMem.weights), comma-separated: {', '.join(WEIGHTS)}; "
        "learning is float32 either way",
    )
    parser.add_argument("--out", type=Path, default=Path("runs"))
    return parser


def show_differences(requests: list[str], base: list[Plan], other: list[Plan], label: str) -> list[str]:
    """One line per request whose plan under ``label`` differs from its ``base`` plan (what
    `plan_record` records differs, as bench_drafts compares plans)."""
    from agentmem.eval.record_plans import plan_record  # it imports this module (learn_demo_pack)

    lines = []
    for request, a, b in zip(requests, base, other):
        if plan_record(a) != plan_record(b):
            got = [f"{c.name}({c.arguments})" for c in b.calls] or [repr(b.text[:60])]
            was = [f"{c.name}({c.arguments})" for c in a.calls] or [repr(a.text[:60])]
            lines.append(f"- {request!r}\n    base   {'; '.join(was)}\n    {label:<6} {'; '.join(got)}")
    return lines


def _row(mem: AgentMem, held: list[dict], values: tuple[Any, ...]) -> tuple[list[str], dict, list[Plan], list[Plan]]:
    """One setting of the levers: its table row, scores, plans and no-tool answers."""
    started = time.perf_counter()
    options = cast(PlanOptions, {option: value for (option, _, _), value in zip(LEVERS, values)})
    plans = mem.plan_batch([e["query"] for e in held], **options)
    seconds = time.perf_counter() - started
    result = score_plans(held, plans)
    answers = mem.plan_batch(list(demo.NO_TOOL_REQUESTS), **options)
    in_words = sum(1 for p in answers if not p.calls and not p.invalid_calls)
    label = ", ".join(
        f"{name}={_SWITCH[value] if isinstance(value, bool) else f'{value:g}'}"
        for (_, _, name), value in zip(LEVERS, values)
    )
    cells = [f"{result[p].tool_f1:.3f} / {result[p].argument_f1:.3f}" for p in ("all", "single", "two-call")]
    row = [
        label,
        *cells,
        f"{result['all'].exact_match:.3f}",
        f"{result['all'].schema_valid_rate:.2f}",
        f"{in_words}/{len(answers)}",
        f"{seconds:.0f} s",
    ]
    return row, result, plans, answers


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        weights = parse_weights(args.weights)
    except ValueError as exc:
        parser.error(str(exc))
    base = load_backbone(args.backbone)
    adapter = None if args.plain else Adapter.load(args.adapter) if args.adapter else shipped_adapter(args.backbone)
    backbone = apply_adapter(base, adapter) if adapter is not None else base
    started = time.perf_counter()
    if args.bank is not None and (args.bank / "bank.json").exists():
        mem, report = AgentMem.load(args.bank, backbone=base), None  # the bank carries its adapter
    else:
        mem = AgentMem(backbone)
        report = learn_demo_pack(
            mem,
            bf16=_PRECISION[args.bf16],
            seed=args.learn_seed,
            averaged_runs=args.averaged_runs,
            lr_schedule=args.lr_schedule,
        )
        if args.bank is not None:
            mem.save(args.bank)
    learned = time.perf_counter() - started
    held = demo.held_out_examples(seed=args.held_seed)

    rows: list[list[str]] = []
    shown: list[str] = []
    library = DecodeSettings()
    tried = [_values(getattr(args, option), isinstance(getattr(library, option), bool)) for option, _, _ in LEVERS]
    best: tuple[float, str, list[Plan]] | None = None
    first: list[Plan] | None = None
    by_weights: dict[tuple[Any, ...], list[tuple[str, list[Plan]]]] = {}  # per setting: each weights' plans
    labelled = weights != ["float32"]
    for weight in weights:
        mem.weights = weight
        for values in itertools.product(*tried):
            row, result, plans, answers = _row(mem, held, values)
            if labelled:
                row[0] = f"weights={weight}" + (f", {row[0]}" if row[0] else "")
            rows.append(row)
            print(runinfo.table_row(row), flush=True)
            by_weights.setdefault(values, []).append((weight, plans + answers))
            if first is None:
                first = plans
                shown.append(f"#### Plans, {row[0]}\n\n{show_plans(held, plans)}")
                shown.append(f"#### Requests that need no tool, {row[0]}\n\n{show_answers(answers)}")
            if best is None or result["all"].argument_f1 > best[0]:
                best = (result["all"].argument_f1, row[0], plans)
    if best is not None and best[2] is not first:
        shown.append(f"#### Plans, {best[1]} (best argument F1)\n\n{show_plans(held, best[2])}")
    requests = [e["query"] for e in held] + list(demo.NO_TOOL_REQUESTS)
    for values, planned in by_weights.items():
        (base_weight, reference), *others = planned
        for weight, plans in others:
            diff = show_differences(requests, reference, plans, weight)
            setting = ", ".join(f"{name}={v}" for (_, _, name), v in zip(LEVERS, values))
            title = f"#### Plans that differ, {weight} vs {base_weight} ({setting}): {len(diff)} of {len(requests)}"
            shown.append(f"{title}\n\n" + ("\n".join(diff) or "(none)"))
            print(title, *diff, sep="\n", flush=True)

    which = "plain" if adapter is None else f"adapter {adapter.id}"
    source = (
        f"learned in {learned:.0f} s ({'bf16 autocast' if report.bf16 else 'float32'}, "
        f"loss {report.first_loss:.3f} -> {report.last_loss:.3f})"
        if report is not None
        else f"bank loaded from {args.bank} in {learned:.0f} s"
    )
    header = [
        "decoding",
        "tool F1 / arg F1 (all 40)",
        "single-call (32)",
        "two-call (8)",
        "exact match",
        "schema-valid",
        "no tool: answered in words",
        "planning time",
    ]
    today = runinfo.today()
    text = runinfo.record(
        runinfo.heading("Decoding levers on the demo pack", today, runinfo.machine(base.device)),
        f"`{runinfo.command('agentmem.eval.bench_decoding', argv)}` on {args.backbone}, {which}; {source}. "
        f"Held-out draw seed {args.held_seed}.",
        runinfo.table(header, rows),
        *shown,
    )
    runinfo.append_record(text, args.out / f"decoding-{today}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
