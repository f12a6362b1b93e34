"""Decoding levers on real data: does each default lever earn its place?

The rule of the house: a decoding lever is on by default only where it is at least neutral
on every real data set and helps on one. This bench measures it, with the evaluations' own
data preparation and TokMem method (`agentmem.eval.tokmem`, the shipped adaptation):

* a NESTFUL subset (ComplexFuncBench by default; `agentmem.eval.runner.prepare_data`): the
  test split is cut into two disjoint parts, ``report`` (the seeded sample that ``agentmem
  eval --limit N`` scores) and ``dev`` (another seeded sample of the rest); each request is
  planned once (``tool_choice="required"``, as the evaluation plans);
* ``bfcl-multi-turn`` (`agentmem.eval.agent`): the 12 dev conversations (``dev``) or the 12
  test conversations (``report``), run as the executed agent evaluation runs them, with the
  conversation so far or, with ``--turn-alone``, each turn alone; plus requests of BFCL's
  irrelevance sets (a dev sample disjoint from the evaluation's), whose share answered in
  words is reported beside the share of tool turns answered in words.

The memory tokens are learned once on the training split (or loaded from ``--bank``), then
the part is planned with the library's defaults, with every lever off, with each lever on
alone, with each lever of ``--on-top`` on over the defaults (``copy_bias=1``: a bonus lever at
that value), (``--leave-one-out``) with each
lever off alone, and with ``fall_back_to_text`` alone at each ``--shares`` value
(`FallBackToText.share`); every row plans the same requests with the same rows, so
differences come from decoding alone. ``--alone ''`` plans the first two rows
only: the comparison to report, on the ``report`` part, once the defaults are chosen.
``--no-baselines`` leaves those two rows out, for a bank whose records hold them already.

``--weights`` plans every row on other backbone weights (`AgentMem.weights`; the rows are
learned on float32 either way).

Prints a Markdown table and a dozen plans of the defaults, of levers off and of each
``--on-top`` row beside their gold calls; appends both to ``runs/levers-<date>.md``.

``--records DIR`` writes every row's per-turn records to ``DIR/<row>.json`` (`write_records`,
named after the row's label: ``defaults.json``, ``all-levers-off.json``...), each as soon as
its row is planned: on ``bfcl-multi-turn`` the records of `run_conversations` (per
conversation its id, state match and turns; per turn its request, the last message of the
turn, its gold calls, the calls of all its plans, invalid calls, text, plans: the rounds it
took, at most `MAX_ROUNDS`, whether it was answered in words, its tokens) with each turn's
scores; on a NESTFUL subset one record per request of the same fields (one plan each). Each
file also holds its summary (`records_summary`): turns, turns that reached the round limit,
calls the plans wrote against gold calls; the summaries are printed and added to the record
as a table.

    python -m agentmem.eval.bench_levers --dataset bfcl-multi-turn --bank runs/bfcl-bank
    python -m agentmem.eval.bench_levers --dataset complexfuncbench --bank runs/cfb-bank
    python -m agentmem.eval.bench_levers --dataset bfcl-multi-turn --bank runs/bfcl-bank \
        --alone '' --on-top route_by_last_turn
"""

from __future__ import annotations

import argparse
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

from agentmem import runinfo
from agentmem.backbone import DEFAULT_BACKBONE, WEIGHTS, Backbone, load_backbone
from agentmem.chat import plan_to_dict
from agentmem.core import AgentMem, PlanOptions
from agentmem.decoding.policies import FallBackToText
from agentmem.decoding.settings import LEVERS, PRESETS
from agentmem.eval.agent import (
    BFCL_DATASET,
    MAX_ROUNDS,
    irrelevance,
    planner,
    result_record,
    run_conversations,
    trained_tools,
    training_turns,
    turn_scores,
)
from agentmem.eval.bfcl import Conversation, irrelevance_requests, load_bfcl, split_conversations
from agentmem.eval.datasets import NESTFUL_SUBSETS
from agentmem.eval.methods import FitRecord, MethodSettings
from agentmem.eval.metrics import score
from agentmem.eval.runner import RunConfig, prepare_data, write_json
from agentmem.eval.tokmem import TokMemMethod, plan_prediction
from agentmem.training import LR_SCHEDULES, TrainConfig

#: One row's measurement: its table cells after the label, a dozen plans to show, and its
#: records (`write_records`: ``max_rounds`` and ``conversations`` or ``requests``).
Measure = Callable[[PlanOptions], tuple[list[str], str, dict[str, Any]]]
#: The scores kept in each turn's record.
TURN_SCORES = ("tool_f1", "argument_f1", "exact_match")
#: The columns of the records' summary table (`summary_cells`).
SUMMARY_HEADER = ["decoding", "turns", "turns at the round limit", "calls planned", "gold calls"]


def lever_rows(
    alone: Sequence[str] = LEVERS,
    leave_one_out: bool = False,
    shares: Sequence[float] = (),
    on_top: Sequence[str | tuple[str, float]] = (),
    baselines: bool = True,
) -> list[tuple[str, PlanOptions, float]]:
    """The settings to compare, each with its label and `FallBackToText.share`: the
    defaults and every lever off (unless not ``baselines``), each lever of ``alone`` on
    alone (on as the library's `levers_on` preset has it), each lever of ``on_top`` on over
    the defaults (the row that decides whether one more lever joins them; a ``(lever,
    value)`` pair sets a bonus lever to that value), each lever off alone
    (``leave_one_out``), and fall_back_to_text alone at each of ``shares``."""
    on = {option: getattr(PRESETS["levers_on"], option) for option in LEVERS}
    defaults = {option: getattr(PRESETS["defaults"], option) for option in LEVERS}
    off = {option: getattr(PRESETS["levers_off"], option) for option in LEVERS}
    share = FallBackToText.share
    # With every lever off by default the two rows are one plan: planned once.
    rows: list[tuple[str, dict[str, Any], float]] = []
    if baselines:  # else planned already (an earlier run's --records hold them)
        rows += (
            [("defaults (every lever off)", defaults, share)]
            if defaults == off
            else [("defaults", defaults, share), ("all levers off", dict(off), share)]
        )
    rows += [(f"levers off, {option} on", {**off, option: on[option]}, share) for option in alone]
    for entry in on_top:
        option, value = (entry, on[entry]) if isinstance(entry, str) else entry
        label = f"defaults, {option} on" if isinstance(entry, str) else f"defaults, {option} {value:g}"
        rows.append((label, {**defaults, option: value}, share))
    if leave_one_out:
        rows += [(f"every lever on, {option} off", {**on, option: off[option]}, share) for option in LEVERS]
    rows += [(f"levers off, fall_back_to_text at {s}", {**off, "fall_back_to_text": True}, s) for s in shares]
    return [(label, cast(PlanOptions, options), s) for label, options, s in rows]


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


def _calls(calls: list[dict]) -> str:
    return "; ".join(f"{c['name']}({c['arguments']})" for c in calls)


def _with_scores(turn: dict[str, Any]) -> dict[str, Any]:
    """A turn's record with its scores (`TURN_SCORES`, as `result_record` scores turns)."""
    scores = turn_scores([turn])
    return {**turn, "scores": {k: scores[k] for k in TURN_SCORES}}


def conversation_records(records: list[dict[str, Any]], conversations: Sequence[Conversation]) -> list[dict[str, Any]]:
    """`run_conversations`' records with each turn's request (the last message of the turn)
    and scores."""
    return [
        {
            **record,
            "turns": [
                _with_scores({"request": conversation.turns[j][-1]["content"] if conversation.turns[j] else "", **t})
                for j, t in enumerate(record["turns"])
            ],
        }
        for record, conversation in zip(records, conversations)
    ]


def records_turns(recorded: dict[str, Any]) -> list[dict[str, Any]]:
    """Every turn (or request) of a row's records."""
    if "requests" in recorded:
        return list(recorded["requests"])
    return [t for r in recorded["conversations"] for t in r["turns"]]


def records_summary(turns: Sequence[dict[str, Any]], max_rounds: int | None) -> dict[str, Any]:
    """Turns, the turns whose plans reached the round limit (``plans >= max_rounds``; None
    where a request is planned once), and the calls the plans wrote against the gold calls."""
    return {
        "turns": len(turns),
        "max_rounds": max_rounds,
        "turns_at_round_limit": None if max_rounds is None else sum(t["plans"] >= max_rounds for t in turns),
        "calls": sum(len(t["calls"]) for t in turns),
        "gold_calls": sum(len(t["gold"]) for t in turns),
    }


def record_name(label: str) -> str:
    """A row's records file name: its label in lower case, each run of other characters than
    letters, digits and underscores a dash (``levers off, copy_bias on`` -> ``levers-off-copy_bias-on``)."""
    return re.sub(r"[^a-z0-9_]+", "-", label.lower()).strip("-") + ".json"


def write_records(folder: Path, row: str, recorded: dict[str, Any], **about: Any) -> tuple[Path, dict[str, Any]]:
    """Writes a row's records to ``folder/<row>.json`` (atomically: `write_json`) with the
    row's label, ``about`` (dataset, part) and the summary; returns the path and the summary."""
    summary = records_summary(records_turns(recorded), recorded["max_rounds"])
    path = folder / record_name(row)
    write_json(path, {"row": row, **about, "summary": summary, **recorded})
    return path, summary


def summary_cells(summary: dict[str, Any]) -> list[str]:
    """A summary's cells in the records table (`SUMMARY_HEADER`)."""
    limit = summary["turns_at_round_limit"]
    return [
        str(summary["turns"]),
        "-" if limit is None else f"{limit} (limit {summary['max_rounds']})",
        str(summary["calls"]),
        str(summary["gold_calls"]),
    ]


def _fitted(
    base: Backbone, settings: MethodSettings, bank: Path | None, train: list[dict], inventory: dict
) -> tuple[TokMemMethod, str]:
    """TokMem learned on ``train`` (or loaded from ``bank``, a folder saved by an earlier run)."""
    method = TokMemMethod(base, settings, adapted=True)
    if bank is not None and (bank / "bank.json").exists():
        method.memory = AgentMem.load(bank, backbone=base)
        return method, f"bank loaded from {bank}"
    fit: FitRecord = method.fit(train, inventory)
    if bank is not None:
        method.memory.save(bank)
    return method, f"learned on {fit.examples} training requests, {settings.epochs} epochs, in {fit.seconds:.0f} s"


def nestful_part(
    args: argparse.Namespace, base: Backbone, settings: MethodSettings
) -> tuple[TokMemMethod, str, Measure]:
    """A NESTFUL subset's part: the fitted method, where it comes from, and how a row is measured."""
    # the split follows --seed alone, as BFCL's does: --learn-seed learns another bank on the same data
    data = prepare_data(
        RunConfig(out=args.out, dataset=args.dataset, limit=None, settings=replace(settings, seed=args.seed))
    )
    requests = parts(data.test, args.limit, args.seed)[args.part]
    method, source = _fitted(base, settings, args.bank, data.train, data.inventory)

    def measure(options: PlanOptions) -> tuple[list[str], str, dict[str, Any]]:
        started = time.perf_counter()
        plans = [
            plan_to_dict(p)
            for p in method.memory.plan_batch([ex["query"] for ex in requests], tool_choice="required", **options)
        ]
        seconds = (time.perf_counter() - started) / len(requests)
        predictions = [plan_prediction(p) for p in plans]
        result = score(
            [ex["calls"] for ex in requests], [p.calls for p in predictions], [len(p.invalid) for p in predictions]
        )
        shown = [
            f"- {ex['query'][:160]!r}\n    gold {_calls(ex['calls'])}\n    plan {_calls(p.calls or []) or repr(p.text[:100])}"
            for ex, p in list(zip(requests, predictions))[:12]
        ]
        cells = [result.tool_f1, result.argument_f1, result.exact_match, result.schema_valid_rate]
        words = sum(p.calls is None for p in predictions)
        recorded = {
            "max_rounds": None,  # one plan a request
            "requests": [
                _with_scores(
                    {
                        "request": ex["query"],
                        "gold": ex["calls"],
                        "calls": p.calls or [],
                        "invalid": p.invalid,
                        "text": p.text,
                        "plans": 1,
                        "words": p.calls is None,
                        "prompt_tokens": p.prompt_tokens,
                        "generated_tokens": p.generated_tokens,
                    }
                )
                for ex, p in zip(requests, predictions)
            ],
        }
        cells = [*(f"{c:.3f}" for c in cells), f"{words}/{len(requests)}", "-", "-", f"{seconds:.2f}"]
        return cells, "\n".join(shown), recorded

    return method, f"{source}; {len(requests)} requests of the {args.part} part (tool_choice='required')", measure


def bfcl_part(args: argparse.Namespace, base: Backbone, settings: MethodSettings) -> tuple[TokMemMethod, str, Measure]:
    """BFCL's dev (or test) conversations, run as the agent evaluation runs them."""
    data = load_bfcl()
    train_conversations, dev, test = split_conversations(data.conversations, args.seed)
    context = not args.turn_alone
    train = training_turns(train_conversations, data, context, args.read_results)
    inventory = trained_tools(data, train)
    conversations = dev if args.part == "dev" else test
    method, source = _fitted(
        base, settings, args.bank, [{"messages": ex["messages"], "calls": ex["calls"]} for ex in train], inventory
    )
    unneeded = irrelevance_requests(args.irrelevance, args.seed, part=args.part) if args.irrelevance else []

    def measure(options: PlanOptions) -> tuple[list[str], str, dict[str, Any]]:
        plan, resumes = planner(method, inventory, dict(options))
        started = time.perf_counter()
        records = run_conversations(conversations, data, plan, resumes, context, inventory)
        result = result_record("tokmem", records, time.perf_counter() - started, FitRecord(0.0, 0, 0))
        words = irrelevance(plan, list(inventory), unneeded)["answered_in_words"] if unneeded else None
        s = result["scores"]
        cells = [f"{s[k]:.3f}" for k in ("tool_f1", "argument_f1", "exact_match", "schema_valid_rate")]
        cells += [
            f"{result['tool_turns_answered_in_words']:.3f}",
            f"{result['state_match']:.3f}",
            "-" if words is None else f"{words:.3f}",
            f"{result['cost']['seconds_per_request']:.2f}",
        ]
        turns = [(r["id"], t) for r in records for t in r["turns"]][:12]
        shown = [
            f"- {cid}\n    gold {_calls(t['gold'])}\n    plan {_calls(t['calls']) or repr(t['text'][:100])}"
            for cid, t in turns
        ]
        # the failure the levers were first measured for: a tool request answered in words
        in_words = [
            f"- {r['id']} turn {j}: {conversation.turns[j][-1]['content'][:160]!r}\n"
            f"    gold {_calls(t['gold'])}\n    text {t['text'][:100]!r}"
            for r, conversation in zip(records, conversations)
            for j, t in enumerate(r["turns"])
            if t["gold"] and t["words"]
        ]
        if in_words:
            shown += ["", "Tool turns answered in words:", *in_words]
        recorded = {"max_rounds": MAX_ROUNDS, "conversations": conversation_records(records, conversations)}
        return cells, "\n".join(shown), recorded

    mode = "turn alone" if args.turn_alone else "with the conversation"
    where = f"the 12 {'dev' if args.part == 'dev' else 'test'} conversations, executed agent, {mode}"
    extra = f"; {len(unneeded)} irrelevance requests ({args.part} sample)" if unneeded else ""
    return method, f"{source}; {where}{extra}", measure


def _levers(parser: argparse.ArgumentParser, flag: str, value: str) -> list[str]:
    """The comma-separated lever names of ``flag``; an unknown name is the parser's error."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = sorted(set(names) - set(LEVERS))
    if unknown:
        parser.error(f"{flag}: not levers: {', '.join(unknown)} (levers: {', '.join(LEVERS)})")
    return names


def _on_top(parser: argparse.ArgumentParser, value: str) -> list[str | tuple[str, float]]:
    """``--on-top``'s entries: a lever's name (on as `levers_on` has it) or ``lever=value``
    for a bonus lever (``copy_bias=1``); a lever already on by default, a value for a lever
    that is on or off, or a value that is not a number is the parser's error."""
    entries: list[str | tuple[str, float]] = []
    for entry in (e.strip() for e in value.split(",") if e.strip()):
        name, _, number = entry.partition("=")
        _levers(parser, "--on-top", name)
        default = getattr(PRESETS["defaults"], name)
        if not number:
            if default == getattr(PRESETS["levers_on"], name):
                # its row would plan the defaults row again, at minutes a row
                parser.error(f"--on-top: already on by default: {name}")
            entries.append(name)
            continue
        if isinstance(default, bool):
            parser.error(f"--on-top: {name} is on or off, not a value: {entry}")
        try:
            entries.append((name, float(number)))
        except ValueError:
            parser.error(f"--on-top: {name}=VALUE takes a number, got {number!r}")
    return entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="complexfuncbench", choices=(*NESTFUL_SUBSETS, BFCL_DATASET))
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    parser.add_argument("--part", choices=("dev", "report"), default="dev", help="which part to plan")
    parser.add_argument("--limit", type=int, default=50, help="requests per part (NESTFUL subsets)")
    parser.add_argument("--turn-alone", action="store_true", help="bfcl-multi-turn: each turn alone")
    parser.add_argument("--irrelevance", type=int, default=10, help="bfcl-multi-turn: requests of each irrelevance set")
    parser.add_argument("--epochs", type=int, default=MethodSettings.epochs)
    parser.add_argument("--bank", type=Path, help="bank folder: loaded if it exists, else learned and saved there")
    parser.add_argument(
        "--no-route-from-last-turn",
        dest="route_from_last_turn",
        action="store_false",
        help="bfcl-multi-turn: learn without route_from_last_turn (the ablation of AgentMem.learn_tools' default)",
    )
    parser.add_argument(
        "--read-results",
        action="store_true",
        help="bfcl-multi-turn: learn from traces cut where a call needs its turn's results (training_turns)",
    )
    parser.add_argument("--leave-one-out", action="store_true", help="also each lever off alone")
    parser.add_argument(
        "--alone",
        default=",".join(LEVERS),
        help="the levers to measure on alone (comma-separated; '' for none: the defaults against every lever off)",
    )
    parser.add_argument(
        "--on-top",
        default="",
        help="levers to measure on over the defaults (comma-separated): whether one more lever should join them; "
        "lever=VALUE sets a bonus lever's value (copy_bias=1,copy_bias=3)",
    )
    parser.add_argument(
        "--no-baselines",
        dest="baselines",
        action="store_false",
        help="leave out the defaults and every-lever-off rows (planned already: compare with an earlier --records)",
    )
    parser.add_argument("--shares", default="", help="fall_back_to_text alone at these shares (comma-separated)")
    parser.add_argument("--adapter", type=Path, help="adapter folder (default: the one shipped for the backbone)")
    parser.add_argument("--weights", choices=WEIGHTS, default="float32", help="backbone weights to plan with")
    parser.add_argument("--seed", type=int, default=0, help="seeds the split, the parts and learning")
    parser.add_argument(
        "--learn-seed", type=int, help="seeds learning alone (default: --seed): another bank on the same split"
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
    parser.add_argument("--out", type=Path, default=Path("runs"))
    parser.add_argument(
        "--records",
        type=Path,
        metavar="DIR",
        help="write each row's per-turn records to DIR/<row>.json (bfcl-multi-turn: per turn of each conversation "
        "its request, gold calls, calls, plans (rounds), scores; a NESTFUL subset: per request, one plan each) "
        "with a summary: turns, turns at the round limit, calls planned against gold calls",
    )
    args = parser.parse_args(argv)
    # checked before the bank is learned, which takes minutes to hours
    try:
        shares = tuple(float(s) for s in args.shares.split(",") if s.strip())
    except ValueError:
        parser.error(f"--shares: comma-separated numbers, got {args.shares!r}")
    alone = _levers(parser, "--alone", args.alone)
    on_top = _on_top(parser, args.on_top)

    settings = replace(
        MethodSettings(),
        epochs=args.epochs,
        seed=args.seed if args.learn_seed is None else args.learn_seed,
        progress=False,
        route_from_last_turn=args.route_from_last_turn,
        averaged_runs=args.averaged_runs,
        lr_schedule=args.lr_schedule,
        adapter=str(args.adapter) if args.adapter else None,
    )
    base = load_backbone(args.backbone)
    part = bfcl_part if args.dataset == BFCL_DATASET else nestful_part
    method, source, measure = part(args, base, settings)
    mem = method.memory
    if args.weights != "float32":  # planning weights (AgentMem.weights); learning used float32
        mem.weights = args.weights
        source += f"; planning on {args.weights} weights"
    print(source, flush=True)
    header = ["decoding", "tool F1", "arg F1", "exact", "schema-valid", "in words", "state", "irrelevance in words"]
    rows, shown, summaries = [], [], []
    for label, options, share in lever_rows(alone, args.leave_one_out, shares, on_top, args.baselines):
        # the share is a threshold of the policy, not an option of plan: set on the decoder's levers
        levers = mem._decoder.levers
        mem._decoder.levers = replace(levers, fall_back_to_text=FallBackToText(share=share))
        try:
            cells, plans, recorded = measure(options)
        finally:
            mem._decoder.levers = levers
        rows.append([label, *cells])
        print(runinfo.table_row(rows[-1]), flush=True)
        if args.records is not None:
            path, summary = write_records(args.records, label, recorded, dataset=args.dataset, part=args.part)
            summaries.append([label, *summary_cells(summary)])
            print(f"records: {path}: {', '.join(f'{k} {v}' for k, v in summary.items())}", flush=True)
        if label.startswith(("defaults", "all levers off")):  # "defaults, X on" too
            shown.append(f"#### Plans, {label}\n\n{plans}")

    today = runinfo.today()
    text = runinfo.record(
        runinfo.heading(f"Decoding levers on {args.dataset} ({args.part} part)", today, runinfo.machine(base.device)),
        f"`{runinfo.command('agentmem.eval.bench_levers', argv)}`: TokMem with "
        f"{f'the adapter {args.adapter}' if args.adapter else 'the shipped adaptation'}, {source}.",
        runinfo.table([*header, "s / request"], rows),
        *(
            [f"Per-turn records in `{args.records}`; per row:", runinfo.table(SUMMARY_HEADER, summaries)]
            if summaries
            else []
        ),
        *shown,
    )
    runinfo.append_record(text, args.out / f"levers-{today}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
