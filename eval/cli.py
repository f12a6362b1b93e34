"""``agentmem eval``: the evaluation's command, added to the ``agentmem`` CLI.

The core CLI (`agentmem.cli`) never imports the evaluation: pyproject registers
:func:`register` under the entry-point group ``agentmem.commands``, and the CLI calls it
with its subparsers.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentmem.eval.methods import MethodSettings

__all__ = ["register"]


def register(commands: Any) -> None:
    """Adds the ``eval`` subcommand to the ``agentmem`` CLI's subparsers."""
    evaluate = commands.add_parser("eval", help="evaluate TokMem against ICL, RAG and LoRA baselines; write a report")
    evaluate.add_argument(
        "--dataset",
        default="complexfuncbench",
        help="complexfuncbench, glaive, sgd, executable, jsonl, or bfcl-multi-turn (an executed agent run)",
    )
    evaluate.add_argument("--requests", type=Path, help="with --dataset jsonl: JSONL of {query, calls}")
    evaluate.add_argument("--tools", type=Path, help="with --dataset jsonl: JSON list of function schemas")
    evaluate.add_argument(
        "--methods", default="icl,rag,lora,tokmem", help="comma-separated: icl, rag, lora, tokmem, tokmem-adapted"
    )
    evaluate.add_argument("--limit", type=int, default=50, help="test requests (seeded sample; 0: all)")
    evaluate.add_argument("--out", type=Path, required=True, help="results folder (an existing one is resumed)")
    evaluate.add_argument("--full", action="store_true", help="all requests, not only the 2-4-call subset")
    evaluate.add_argument(
        "--train-per-tool", type=int, default=5, help="cap training requests at about this many per tool (0: all)"
    )
    evaluate.add_argument("--backbone", default="smollm2-135m")
    evaluate.add_argument("--adapter", help="adapter folder for tokmem-adapted (default: the shipped one)")
    evaluate.add_argument("--epochs", type=int, help="training passes (lora, tokmem; default: the evaluation's, 10)")
    evaluate.add_argument(
        "--averaged-runs", type=int, help="tokmem: runs averaged into the rows (default: the library's, 1)"
    )
    evaluate.add_argument(
        "--lr-schedule",
        choices=("constant", "linear"),
        help="tokmem: the rows' learning-rate schedule (default: the library's)",
    )
    evaluate.add_argument("--batch-size", type=int, default=8, help="requests planned together")
    evaluate.add_argument("--rag-k", type=int, default=5, help="tools retrieved per request by rag")
    evaluate.add_argument("--seed", type=int, default=0)
    reroute = evaluate.add_mutually_exclusive_group()
    reroute.add_argument(
        "--reroute",
        action="store_const",
        const=True,
        dest="reroute",
        help="tokmem: reroute calls that invent a value (default: the library's, as AgentMem.plan)",
    )
    reroute.add_argument(
        "--no-reroute", action="store_const", const=False, dest="reroute", help="tokmem: keep the likeliest tool's call"
    )
    evaluate.add_argument(
        "--optional-bias", type=float, help="tokmem: bonus to writing optional arguments (default: the library's)"
    )
    bfcl = evaluate.add_argument_group("bfcl-multi-turn (--limit counts test conversations)")
    bfcl.add_argument("--turn-alone", action="store_true", help="plan from each turn alone, not the conversation")
    bfcl.add_argument(
        "--levers",
        default="defaults",
        help="tokmem: comma-separated, each a row from one fit: defaults (the library's decoding), off (every lever off)",
    )
    bfcl.add_argument("--irrelevance", type=int, default=0, help="requests of each irrelevance set to plan (0: none)")
    bfcl.add_argument(
        "--read-results",
        action=argparse.BooleanOptionalAction,
        help="tokmem: learn from traces cut where a call needs its turn's results, and read them on resuming "
        "(default: AgentRunConfig.read_results)",
    )
    evaluate.set_defaults(run=_eval)


def _method_settings(args: argparse.Namespace, **given: Any) -> MethodSettings:
    """The methods' settings from the command line (an option not given keeps its default)."""
    from agentmem.eval.methods import MethodSettings

    given = {"epochs": args.epochs, "averaged_runs": args.averaged_runs, "lr_schedule": args.lr_schedule, **given}
    return MethodSettings(
        batch_size=args.batch_size,
        rag_k=args.rag_k,
        adapter=args.adapter,
        seed=args.seed,
        **{name: value for name, value in given.items() if value is not None},
    )


def _eval(args: argparse.Namespace) -> int:
    from agentmem.extras import require_extra

    # before the run, not at its end when the report's plots are drawn; the CLI prints the
    # MissingExtraError and exits 2
    require_extra("eval")
    from agentmem.eval.runner import RunConfig, run

    if args.dataset == "bfcl-multi-turn":
        return _eval_agent(args)
    return _run_and_report(
        args,
        lambda: RunConfig(
            out=args.out,
            dataset=args.dataset,
            requests=args.requests,
            tools=args.tools,
            methods=tuple(m for m in args.methods.split(",") if m),
            limit=args.limit or None,
            full=args.full,
            train_per_tool=args.train_per_tool or None,
            backbone=args.backbone,
            settings=_method_settings(args, reroute_unfounded=args.reroute, optional_bias=args.optional_bias),
            command=args.command_line,
        ),
        run,
    )


def _eval_agent(args: argparse.Namespace) -> int:
    from agentmem.eval.agent import AgentRunConfig, run_agent

    if args.reroute is not None or args.optional_bias is not None:
        print(
            "agentmem eval: error: bfcl-multi-turn plans as AgentMem.plan does: use --levers, not --reroute or "
            "--optional-bias",
            file=sys.stderr,
        )
        return 2
    return _run_and_report(
        args,
        lambda: AgentRunConfig(
            out=args.out,
            methods=tuple(m for m in args.methods.split(",") if m),
            limit=args.limit or None,
            context=not args.turn_alone,
            levers=tuple(v.strip() for v in args.levers.split(",") if v.strip()),
            train_per_tool=args.train_per_tool or None,
            irrelevance=args.irrelevance,
            **({} if args.read_results is None else {"read_results": args.read_results}),
            backbone=args.backbone,
            settings=_method_settings(args),
            command=args.command_line,
        ),
        run_agent,
    )


def _run_and_report(args: argparse.Namespace, config: Callable[[], Any], run: Callable[[Any], dict[str, Any]]) -> int:
    """Builds the run's config (a bad option: its error, exit 2), runs it, prints its
    report; exit 1 when no method could run."""
    try:
        built = config()
    except ValueError as exc:
        print(f"agentmem eval: error: {exc}", file=sys.stderr)
        return 2
    summary = run(built)
    print((args.out / "report.md").read_text(encoding="utf-8"))
    return 0 if any(r.get("status") == "ok" for r in summary["methods"].values()) else 1
