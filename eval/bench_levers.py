"""Decoding levers on real data: does each default lever earn its place?

The rule of the house: a decoding lever is on by default only where it is at least neutral
on every real data set and helps on one. This bench measures it on a NESTFUL subset
(ComplexFuncBench by default), with the evaluation's own data preparation
(`agentmem.eval.runner.prepare_data`) and its TokMem method (`agentmem.eval.tokmem`):

1. The memory tokens are learned once on the training split (or loaded from ``--bank``).
2. The test split is cut into two disjoint parts: ``report``, the seeded sample that
   ``agentmem eval --limit N`` scores, and ``dev``, another seeded sample of the rest, on
   which defaults and thresholds are to be chosen (``--part``).
3. The part is planned with the library's defaults, with every lever off, with each lever
   off alone (leave-one-out) and with each lever on alone; every row plans the same
   requests with the same rows, so differences come from decoding alone.

Prints a Markdown table (tool F1, argument F1, exact match, schema-valid rate, answers in
words, planning time) and a dozen plans of the defaults and of levers off beside their gold
calls; appends both to ``runs/levers-<date>.md``.
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

from agentmem import runinfo
from agentmem.backbone import DEFAULT_BACKBONE, load_backbone
from agentmem.chat import plan_to_dict
from agentmem.core import AgentMem, PlanOptions
from agentmem.decoding.settings import LEVERS, PRESETS
from agentmem.eval.datasets import NESTFUL_SUBSETS
from agentmem.eval.methods import MethodSettings
from agentmem.eval.metrics import score
from agentmem.eval.runner import RunConfig, prepare_data
from agentmem.eval.tokmem import TokMemMethod, _prediction


def lever_rows() -> list[tuple[str, PlanOptions]]:
    """The settings to compare, each with its label: the defaults, every lever off, each
    lever off alone and each lever on alone (at its default value)."""
    on = {option: getattr(PRESETS["defaults"], option) for option in LEVERS}
    off = {option: getattr(PRESETS["levers_off"], option) for option in LEVERS}
    rows: list[tuple[str, dict[str, Any]]] = [("defaults", dict(on)), ("all levers off", dict(off))]
    rows += [(f"defaults, {option} off", {**on, option: off[option]}) for option in on]
    rows += [(f"levers off, {option} on", {**off, option: on[option]}) for option in on]
    return [(label, cast(PlanOptions, options)) for label, options in rows]


def parts(test: list[dict], limit: int, seed: int) -> dict[str, list[dict]]:
    """The report part (the sample ``agentmem eval --limit`` scores, same seed) and a dev
    part of the same size drawn from the rest."""
    if len(test) <= limit:
        raise ValueError(f"the test split holds {len(test)} requests: too few for two parts of {limit}")
    chosen = set(random.Random(f"limit:{seed}").sample(range(len(test)), limit))
    rest = [i for i in range(len(test)) if i not in chosen]
    dev = set(random.Random(f"dev:{seed}").sample(rest, min(limit, len(rest))))
    return {
        "report": [ex for i, ex in enumerate(test) if i in chosen],
        "dev": [ex for i, ex in enumerate(test) if i in dev],
    }


def _show(requests: list[dict], plans: list[dict], n: int = 12) -> str:
    lines = []
    for example, plan in list(zip(requests, plans))[:n]:
        gold = "; ".join(f"{c['name']}({c['arguments']})" for c in example["calls"])
        got = "; ".join(f"{c['function']['name']}({c['function']['arguments']})" for c in plan["tool_calls"])
        bad = "; ".join(f"INVALID {c['function']['name']}: {c['error']}" for c in plan["invalid_tool_calls"])
        lines.append(f"- {example['query'][:160]!r}\n    gold {gold}\n    plan {got or plan['text'][:100]!r} {bad}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="complexfuncbench", choices=NESTFUL_SUBSETS)
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    parser.add_argument("--part", choices=("dev", "report"), default="dev", help="which part to plan")
    parser.add_argument("--limit", type=int, default=50, help="requests per part")
    parser.add_argument("--epochs", type=int, default=MethodSettings.epochs)
    parser.add_argument("--bank", type=Path, help="bank folder: loaded if it exists, else learned and saved there")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs"))
    args = parser.parse_args(argv)

    settings = replace(MethodSettings(), epochs=args.epochs, seed=args.seed, progress=False)
    config = RunConfig(out=args.out, dataset=args.dataset, limit=None, settings=settings)
    data = prepare_data(config)
    requests = parts(data.test, args.limit, args.seed)[args.part]
    base = load_backbone(args.backbone)
    started = time.perf_counter()
    if args.bank is not None and (args.bank / "bank.json").exists():
        mem = AgentMem.load(args.bank, backbone=base)
        source = f"bank loaded from {args.bank}"
    else:
        method = TokMemMethod(base, settings, adapted=True)
        fit = method.fit(data.train, data.inventory)
        mem = method.memory
        source = f"learned on {fit.examples} training requests, {args.epochs} epochs, in {fit.seconds:.0f} s"
        if args.bank is not None:
            mem.save(args.bank)
    print(source, flush=True)

    golds = [ex["calls"] for ex in requests]
    header = ["decoding", "tool F1", "arg F1", "exact", "schema-valid", "answered in words", "s / request"]
    rows, shown = [], []
    for label, options in lever_rows():
        started = time.perf_counter()
        plans = [
            plan_to_dict(p) for p in mem.plan_batch([ex["query"] for ex in requests], tool_choice="required", **options)
        ]
        seconds = (time.perf_counter() - started) / len(requests)
        predictions = [_prediction(p) for p in plans]
        result = score(golds, [p.calls for p in predictions], [len(p.invalid) for p in predictions])
        in_words = sum(p.calls is None for p in predictions)
        rows.append(
            [
                label,
                f"{result.tool_f1:.3f}",
                f"{result.argument_f1:.3f}",
                f"{result.exact_match:.3f}",
                f"{result.schema_valid_rate:.2f}",
                f"{in_words}/{len(requests)}",
                f"{seconds:.2f}",
            ]
        )
        print(runinfo.table_row(rows[-1]), flush=True)
        if label in ("defaults", "all levers off"):
            shown.append(f"#### Plans, {label}\n\n{_show(requests, plans)}")

    today = runinfo.today()
    text = runinfo.record(
        runinfo.heading(f"Decoding levers on {args.dataset} ({args.part} part)", today, runinfo.machine(base.device)),
        f"`{runinfo.command('agentmem.eval.bench_levers', argv)}`: TokMem with the shipped adaptation, {source}; "
        f"{len(requests)} requests of the {args.part} part (tool_choice='required', as the evaluation plans).",
        runinfo.table(header, rows),
        *shown,
    )
    runinfo.append_record(text, args.out / f"levers-{today}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
