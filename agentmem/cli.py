"""The ``agentmem`` command: demo, learn, plan, info."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from agentmem.errors import AgentMemError


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
    learn.add_argument("--epochs", type=int, default=3)
    learn.add_argument("--lr", type=float, default=5e-3)

    plan = commands.add_parser("plan", help="plan the tool calls for a request")
    plan.add_argument("bank", type=Path)
    plan.add_argument("request")
    plan.add_argument("--tool-choice", default="auto")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")

    info = commands.add_parser("info", help="describe a saved bank")
    info.add_argument("bank", type=Path)

    args = parser.parse_args(argv)
    try:
        return {"demo": _demo, "learn": _learn, "plan": _plan, "info": _info}[args.command](args)
    except (AgentMemError, OSError, json.JSONDecodeError) as exc:
        print(f"agentmem {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _demo(args: argparse.Namespace) -> int:
    from agentmem.core import AgentMem
    from agentmem.tools import demo

    started = time.perf_counter()
    print(f"Loading backbone {args.backbone} ...")
    mem = AgentMem(args.backbone)
    print(f"  {mem.backbone.name}: {sum(p.numel() for p in mem.backbone.model.parameters()) / 1e6:.1f} M parameters, frozen")
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
    if not isinstance(entries, list) or not all(isinstance(e, dict) and {"tool", "examples"} <= e.keys() for e in entries):
        print(f"agentmem learn: error: {args.tools} must hold a JSON list of {{\"tool\": ..., \"examples\": [...]}}", file=sys.stderr)
        return 2
    mem = AgentMem.load(args.bank) if args.bank else AgentMem(args.backbone)
    report = mem.learn_tools([(e["tool"], e["examples"]) for e in entries], epochs=args.epochs, lr=args.lr)
    print(report)
    print(f"saved {len(mem.tools)} tools to {mem.save(args.out)}")
    return 0


def _plan(args: argparse.Namespace) -> int:
    from agentmem.core import AgentMem

    mem = AgentMem.load(args.bank)
    plan = mem.plan(args.request, tool_choice=args.tool_choice)
    if args.json:
        print(json.dumps(_plan_dict(plan), indent=2, ensure_ascii=False))
    else:
        print(plan)
    return 0


def _plan_dict(plan: Any) -> dict[str, Any]:
    return {
        "calls": [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in plan.calls],
        "invalid_calls": [{"id": c.id, "name": c.name, "raw": c.raw, "reason": c.reason} for c in plan.invalid_calls],
        "text": plan.text,
        "finish_reason": plan.finish_reason,
        "usage": plan.usage,
        "timings": plan.timings,
        "notes": plan.notes,
    }


def _info(args: argparse.Namespace) -> int:
    from agentmem.bank_io import load_bank

    saved = load_bank(args.bank)
    print(f"bank {args.bank}: {len(saved.specs)} tools on backbone {saved.backbone_name} ({saved.fingerprint})")
    for i, spec in enumerate(saved.specs):
        record = saved.training.get(spec.name, {})
        trained = f"{record.get('examples', '?')} examples, loss {record.get('last_loss', '?')}" if record else "no record"
        print(f"  [{i}] {spec.name}: {spec.description[:60]} ({trained}, |row| = {saved.rows[i].norm():.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
