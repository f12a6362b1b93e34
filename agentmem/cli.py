"""The ``agentmem`` command: demo, learn, plan, info, export, adapt, serve, and ``eval``.

``eval`` belongs to `agentmem.eval`, which registers it as an entry point of the group
:data:`COMMANDS_GROUP` (a function that adds its subparser, with ``run`` as the handler),
so that the core does not depend on its evaluation.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentmem.decoding.settings import OPTIONS, SERVER_OPTIONS
from agentmem.errors import AgentMemError

#: Entry-point group of commands added by other layers: ``register(subparsers)`` each.
COMMANDS_GROUP = "agentmem.commands"

#: ``agentmem serve --weights``'s choices: `agentmem.backbone.WEIGHTS`, written out so that
#: ``--help`` does not import torch (a test checks that the two are equal).
SERVE_WEIGHTS = ("float32", "int8", "bfloat16")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``agentmem`` command."""
    parser = argparse.ArgumentParser(prog="agentmem", description="Procedural memory of tools for a frozen LM.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="learn the demo tools, plan a two-call request, run the calls")
    demo.add_argument("--backbone", default="smollm2-135m")
    demo.add_argument("--save", type=Path, help="also save the learned bank to this folder")

    learn = commands.add_parser("learn", help="learn tools from a JSON file into a bank")
    learn.add_argument("tools", type=Path, help='JSON list of {"tool": <function schema>, "examples": [...]}')
    learn.add_argument("--out", type=Path, required=True, help="bank folder to write")
    learn.add_argument("--bank", type=Path, help="existing bank to extend (continual learning)")
    learn.add_argument("--backbone", default="smollm2-135m")
    learn.add_argument("--epochs", type=int, help="passes over the examples (default: TrainConfig's, 5)")
    learn.add_argument("--lr", type=float, help="learning rate of the memory rows (default: TrainConfig's, 5e-3)")
    learn.add_argument(
        "--averaged-runs",
        type=int,
        help="learn the rows this many times, each over its own order of the examples, and keep their average "
        "(default 1; k runs take k times as long)",
    )
    learn.add_argument(
        "--lr-schedule",
        choices=("constant", "linear"),
        help="the rows' learning rate: constant, or linear warmup then decay to 0 as the paper's code "
        "(default: TrainConfig's)",
    )
    learn.add_argument("--rehearse", type=int, help="kept requests of each earlier tool replayed (default 8; 0: none)")
    learn.add_argument(
        "--keep", type=int, help="requests of each new tool kept in the bank for later rehearsal (default 16)"
    )
    learn.add_argument(
        "--skip-invalid",
        action="store_true",
        help="leave out examples that are malformed or break their schema (each is reported) instead of stopping",
    )

    plan = commands.add_parser("plan", help="plan the tool calls for a request")
    plan.add_argument("bank", type=Path)
    plan.add_argument("request")
    _add_plan_options(plan)
    plan.add_argument(
        "--json",
        action="store_true",
        help="print the plan as JSON: tool_calls in OpenAI's shape (arguments as JSON text), "
        "invalid_tool_calls with their error, text, finish_reason, usage, timings, notes",
    )

    info = commands.add_parser("info", help="describe a saved bank")
    info.add_argument("bank", type=Path)

    export = commands.add_parser("export", help="write a bank as a Hugging Face checkpoint, one special token per tool")
    export.add_argument("bank", type=Path)
    export.add_argument(
        "--out", type=Path, required=True, help="checkpoint folder to write (must not exist or be empty)"
    )
    export.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")
    export.add_argument(
        "--dtype", choices=["float32", "bfloat16", "float16"], help="saved weights' dtype (default: the backbone's)"
    )

    adapt = commands.add_parser("adapt", help="run the one-time adaptation phase on auxiliary tools; save the adapter")
    adapt.add_argument(
        "--out", type=Path, required=True, help="adapter folder to write (adapter.safetensors + adapter.json)"
    )
    adapt.add_argument("--backbone", default="smollm2-135m", help="base backbone (adapted from its plain weights)")
    adapt.add_argument(
        "--synthetic", type=int, help="synthetic requests in the corpus (default: adaptation_corpus's, 5000)"
    )
    adapt.add_argument(
        "--synthetic-tools", type=int, help="synthetic tools in the corpus (default: adaptation_corpus's, 76)"
    )
    adapt.add_argument(
        "--no-tool",
        type=int,
        help="requests in the corpus that need no tool, answered in words (default: adaptation_corpus's, 0)",
    )
    adapt.add_argument(
        "--agent",
        type=int,
        help="agent-shaped requests in the corpus, whose value comes from the conversation "
        "(default: adaptation_corpus's, 0)",
    )
    adapt.add_argument(
        "--results",
        type=int,
        help="traces in the corpus that end in the results of their calls so far, then the plan's "
        "next call or its end (default: adaptation_corpus's, 0)",
    )
    adapt.add_argument(
        "--subsets", default="glaive,sgd,executable", help="NESTFUL subsets in the corpus, comma-separated"
    )
    adapt.add_argument(
        "--corpus",
        type=Path,
        help='JSON file {"tools": [...], "examples": [...]}: the corpus instead of the generated one',
    )
    adapt.add_argument("--seed", type=int, default=0, help="seeds the corpus and the training")
    adapt.add_argument("--epochs", type=int, default=1)
    adapt.add_argument("--lr", type=float, help="LoRA learning rate (default: AdaptConfig.lr)")
    adapt.add_argument("--memory-lr", type=float, help="learning rate of the temporary memory rows")
    adapt.add_argument("--batch-size", type=int)
    adapt.add_argument(
        "--merge-scale",
        type=float,
        default=1.0,
        help="save the LoRA at this strength (alpha x SCALE; the shipped smollm2-135m adapter uses 0.85)",
    )

    serve = commands.add_parser("serve", help="serve banks over an OpenAI-compatible HTTP API (/v1/chat/completions)")
    serve.add_argument("banks", type=Path, nargs="+", metavar="BANK_OR_DIR", help="bank folders, or folders of banks")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--max-prompt-tokens", type=int, default=4096, help="longest prompt accepted (default: 4096)")
    serve.add_argument("--max-batch", type=int, default=16, help="requests of one bank decoded together (default: 16)")
    serve.add_argument(
        "--max-queue",
        type=int,
        default=64,
        help="requests of one bank waiting beyond those; more get 503 (default: 64)",
    )
    serve.add_argument(
        "--time-limit", type=float, default=120.0, help="seconds a request may take, queue included (default: 120)"
    )
    serve.add_argument(
        "--admin",
        action="store_true",
        help="serve POST/DELETE /v1/banks: load (by folder name, from the folders served) and drop banks at "
        "run time; off by default",
    )
    serve.add_argument(
        "--no-admin", action="store_true", help=argparse.SUPPRESS
    )  # the default now; kept for old scripts
    serve.add_argument(
        "--api-key",
        help="require 'Authorization: Bearer KEY' on every route but /health "
        "(default: the environment variable AGENTMEM_API_KEY, if set)",
    )
    serve.add_argument("--device", help="cpu, cuda... (default: CUDA when available)")
    serve.add_argument(
        "--weights",
        choices=SERVE_WEIGHTS,
        default="float32",
        help="backbone weights every bank plans with (AgentMem.weights; banks on one backbone share one copy): "
        "float32 (default), int8 (CPU only) or bfloat16",
    )
    _add_plan_options(serve, SERVER_OPTIONS)  # decoding for every request (a request picks its tools, limits)

    # commands of other layers (``agentmem eval``), registered as entry points: the core
    # never imports them
    for entry in importlib.metadata.entry_points(group=COMMANDS_GROUP):
        entry.load()(commands)

    args = parser.parse_args(argv)
    args.command_line = "agentmem " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        handlers = {
            "demo": _demo,
            "learn": _learn,
            "plan": _plan,
            "info": _info,
            "export": _export,
            "adapt": _adapt,
            "serve": _serve,
        }
        return handlers[args.command](args) if args.command in handlers else args.run(args)
    except (AgentMemError, OSError, json.JSONDecodeError) as exc:
        print(f"agentmem {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _demo(args: argparse.Namespace) -> int:
    from agentmem.core import AgentMem
    from agentmem.tools import demo

    started = time.perf_counter()
    print(f"Loading backbone {args.backbone} ...")
    mem = AgentMem(args.backbone)
    print(
        f"  {mem.backbone.name}: {sum(p.numel() for p in mem.backbone.model.parameters()) / 1e6:.1f} M parameters, frozen"
    )
    pack = [(demo.TOOLS[name], demo.training_examples(name)) for name in demo.TOOLS]
    # Two-call requests teach the model to chain tokens; they ride along with the first tool.
    pack[0] = (pack[0][0], pack[0][1] + demo.multi_call_examples(n=40))
    print(f"Learning {len(pack)} tools as memory tokens: {', '.join(demo.TOOLS)}")
    report = mem.learn_tools(pack)
    print(f"  {report}")
    print(f"\nRequest: {demo.DEMO_REQUEST}")
    plan = mem.plan(demo.DEMO_REQUEST)
    print(f"Plan ({plan.usage['prompt_tokens']} prompt tokens, {plan.timings['total']:.2f} s):")
    for call in plan.calls:
        print(f"  -> {call.name}({json.dumps(call.arguments, ensure_ascii=False)})")
        print(f"     = {json.dumps(demo.run_call(call.name, call.arguments), ensure_ascii=False)}")
    for bad in plan.invalid_calls:
        print(f"  !! {bad.name}: invalid ({bad.reason}); raw: {bad.raw!r}")
    if plan.text:
        print(f"  text: {plan.text}")
    if args.save:
        print(f"\nSaved the bank to {mem.save(args.save)}")
    print(f"\nDone in {time.perf_counter() - started:.0f} s.")
    return 0


def _learn(args: argparse.Namespace) -> int:
    from agentmem.core import AgentMem

    entries = json.loads(args.tools.read_text())
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and {"tool", "examples"} <= e.keys() for e in entries
    ):
        print(
            f'agentmem learn: error: {args.tools} must hold a JSON list of {{"tool": ..., "examples": [...]}}',
            file=sys.stderr,
        )
        return 2
    mem = AgentMem.load(args.bank) if args.bank else AgentMem(args.backbone)
    given = {
        "epochs": args.epochs,
        "lr": args.lr,
        "averaged_runs": args.averaged_runs,
        "lr_schedule": args.lr_schedule,
        "rehearse": args.rehearse,
        "keep": args.keep,
    }
    options = {k: v for k, v in given.items() if v is not None}  # the library's defaults otherwise
    invalid = "skip" if args.skip_invalid else "raise"
    report = mem.learn_tools([(e["tool"], e["examples"]) for e in entries], invalid=invalid, **options)
    print(report)
    print(f"saved {len(mem.tools)} tools to {mem.save(args.out)}")
    return 0


#: Flags kept from before every option had one, as aliases.
#: Older flags that switch an option off, kept working.
_PLAN_OFF_ALIASES = {"drop_unfounded": "--keep-unfounded", "reroute_unfounded": "--no-reroute"}


def _add_plan_options(parser: argparse.ArgumentParser, names: Sequence[str] | None = None) -> None:
    """One flag per `DecodeSettings` option (its help, its default: the library's), or per
    option of ``names``: a number or a word as ``--max-calls 3``, a switch as
    ``--complete-plan`` / ``--no-complete-plan``, ``--tools`` as comma-separated names."""
    for option in OPTIONS:
        if names is not None and option.name not in names:
            continue
        flag = "--" + option.name.replace("_", "-")
        words = option.metadata["help"].replace("%", "%%") + f" (default: {option.default!r})"
        if isinstance(option.default, bool):
            parser.add_argument(flag, dest=option.name, action=argparse.BooleanOptionalAction, default=None, help=words)
            if option.name in _PLAN_OFF_ALIASES:
                alias = _PLAN_OFF_ALIASES[option.name]
                parser.add_argument(alias, dest=option.name, action="store_false", help=f"the same as --no-{flag[2:]}")
        elif option.name == "tools":
            parser.add_argument(flag, type=lambda v: [n.strip() for n in v.split(",") if n.strip()], help=words)
        else:
            parser.add_argument(flag, dest=option.name, type=type(option.default), help=words)


def _plan(args: argparse.Namespace) -> int:
    from agentmem.chat import plan_to_dict
    from agentmem.core import AgentMem

    mem = AgentMem.load(args.bank)
    options = {f.name: getattr(args, f.name) for f in OPTIONS if getattr(args, f.name) is not None}
    plan = mem.plan(args.request, **options)
    if args.json:
        print(json.dumps(plan_to_dict(plan, mem.schemas), indent=2, ensure_ascii=False))
    else:
        print(plan)
    return 0


def _info(args: argparse.Namespace) -> int:
    from agentmem.bank_io import load_bank

    saved = load_bank(args.bank)
    print(f"bank {args.bank}: {len(saved.specs)} tools on backbone {saved.backbone_name} ({saved.fingerprint})")
    for i, spec in enumerate(saved.specs):
        record = saved.training.get(spec.name, {})
        trained = (
            f"{record.get('examples', '?')} examples, loss {record.get('last_loss', '?')}" if record else "no record"
        )
        print(f"  [{i}] {spec.name}: {spec.description[:60]} ({trained}, |row| = {saved.rows[i].norm():.3f})")
    return 0


def _export(args: argparse.Namespace) -> int:
    from agentmem.core import AgentMem
    from agentmem.export import export_checkpoint, tool_token

    mem = AgentMem.load(args.bank)
    path = export_checkpoint(mem, args.out, overwrite=args.overwrite, dtype=args.dtype)
    print(f"exported {len(mem.tools)} tools on {mem.backbone.name} to {path}")
    for name in mem.bank.names:
        print(f"  {tool_token(name)} = id {mem.memory_token_id(name)}")
    return 0


def _adapt(args: argparse.Namespace) -> int:
    import datetime

    from agentmem import distributed
    from agentmem.adaptation.corpus import adaptation_corpus
    from agentmem.core import AgentMem
    from agentmem.runinfo import machine

    options = {"lr": args.lr, "memory_lr": args.memory_lr, "batch_size": args.batch_size}
    if not args.merge_scale > 0:  # checked before the long run, not after it
        print(f"agentmem adapt: error: --merge-scale must be > 0, got {args.merge_scale}", file=sys.stderr)
        return 2
    subsets = [s for s in args.subsets.split(",") if s]
    try:
        if args.corpus is not None:
            corpus, record = _corpus_file(args.corpus), {"name": str(args.corpus), "file": str(args.corpus)}
        else:
            sizes = {
                "n_synthetic": args.synthetic,
                "synthetic_tool_count": args.synthetic_tools,
                "n_no_tool": args.no_tool,
                "n_agent": args.agent,
                "n_results": args.results,
            }
            sizes = {k: v for k, v in sizes.items() if v is not None}  # the library's defaults otherwise
            corpus = adaptation_corpus(seed=args.seed, subsets=subsets, **sizes)
            record = {
                "name": corpus.name,
                "seed": args.seed,
                "subsets": subsets,
                "requests": len(corpus.examples),
                "tools": len(corpus.tools),
                **sizes,
            }
        mem = AgentMem(args.backbone, adapted=False)
        if distributed.is_main_process():
            print(
                f"Adapting {args.backbone} on {corpus.name}: {len(corpus.tools)} tools, {len(corpus.examples)} requests"
            )
        report = mem.adapt(
            corpus, epochs=args.epochs, seed=args.seed, **{k: v for k, v in options.items() if v is not None}
        )
    except ValueError as exc:  # bad sizes, subsets or settings; AgentMemErrors are ValueErrors too
        print(f"agentmem adapt: error: {exc}", file=sys.stderr)
        return 2
    adapter = mem.backbone.adapter
    if args.merge_scale != 1.0:
        adapter = adapter.rescaled(args.merge_scale)
    adapter.training.update(
        {
            "command": args.command_line,
            "corpus": record,
            "date": datetime.date.today().isoformat(),
            "machine": machine(mem.backbone.device),
        }
    )
    saved = adapter.save(args.out)  # under a multi-process launcher, only the main process writes
    if distributed.is_main_process():
        print(report)
        print(f"saved adapter {adapter.id} to {saved}")
    return 0


def _corpus_file(path: Path) -> Any:
    """An adaptation corpus read from a JSON file ``{"tools": [...], "examples": [...]}``
    (tools as a list of schemas or a dict of them by name; checked by `AgentMem.adapt`)."""
    from types import SimpleNamespace

    data = json.loads(path.read_text(encoding="utf-8"))
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("tools"), (list, dict))
        or not isinstance(data.get("examples"), list)
    ):
        raise ValueError(f'{path} must hold a JSON object {{"tools": [...], "examples": [...]}}')
    return SimpleNamespace(name=str(path), tools=data["tools"], examples=data["examples"])


def _serve(args: argparse.Namespace) -> int:
    from agentmem.extras import require_extra

    require_extra("server")  # before any bank loads; a MissingExtraError is printed, exit 2
    import uvicorn

    # A bank is data: the backbone it names loads from this machine (an alias, a folder, a
    # .gguf file, the Hugging Face cache), never downloaded because a bank asked for it. Set
    # before transformers is imported, which reads it once; HF_HUB_OFFLINE=0 allows downloads.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from agentmem.adapters.server import API_KEY_ENV, BankRegistry, ServerLimits, create_app

    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV) or None
    if api_key is not None and not api_key.strip():
        print("agentmem serve: error: the API key is empty", file=sys.stderr)
        return 2
    registry = BankRegistry(device=args.device, weights=args.weights)
    try:
        names = registry.add_paths(args.banks)
    except ValueError as exc:  # beside main's AgentMemErrors: the weights on this device (int8 on a GPU)
        print(f"agentmem serve: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"agentmem serve: {len(names)} banks ({', '.join(names)}) on {registry.backbones()} backbone(s), "
        f"{args.weights} weights, http://{args.host}:{args.port}/v1{', API key required' if api_key else ''}",
        flush=True,
    )
    if api_key is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"agentmem serve: warning: listening on {args.host} without an API key: anyone who reaches it may "
            f"use it (pass --api-key or set {API_KEY_ENV})",
            file=sys.stderr,
            flush=True,
        )
    limits = ServerLimits(
        max_prompt_tokens=args.max_prompt_tokens,
        time_limit=args.time_limit,
        max_batch=args.max_batch,
        max_queue=args.max_queue,
    )
    decoding = {name: getattr(args, name) for name in SERVER_OPTIONS if getattr(args, name) is not None}
    app = create_app(registry, limits, decoding=decoding, admin=args.admin, api_key=api_key)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
