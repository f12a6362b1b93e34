"""Records the demo pack's plans to JSON, to check that a change to the decoder keeps them.

Plans the held-out requests of both draws (`demo.held_out_examples`, seeds 1 and 2) and the 20
requests that need no tool (`demo.NO_TOOL_REQUESTS`), once with the library's defaults and once
with plain greedy decoding (`export.GREEDY_OPTIONS`), and writes each plan's calls, invalid
calls, text, finish reason, generated tokens and notes (no ids, no timings) to ``--out``. The
bank is learned once (as `bench_decoding` learns it) and saved to ``--bank``, then loaded on
later runs, so two runs differ by decoding alone. With ``--compare``, the plans are compared
with an earlier recording: it prints each request whose plan changed (among the settings and
sets both recordings hold) and exits 1 if any did.

    python -m agentmem.eval.record_plans --bank runs/record-bank --out runs/plans-base.json
    python -m agentmem.eval.record_plans --bank runs/record-bank --out runs/plans-new.json \\
        --compare runs/plans-base.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from agentmem.adaptation.adapter import shipped_adapter
from agentmem.adaptation.resolve import apply_adapter
from agentmem.backbone import DEFAULT_BACKBONE, load_backbone
from agentmem.core import AgentMem, PlanOptions
from agentmem.eval.bench_decoding import learn_demo_pack
from agentmem.export import GREEDY_OPTIONS
from agentmem.tools import demo
from agentmem.tools.calls import Plan, ToolCall

#: The settings recorded: the defaults and plain greedy decoding.
SETTINGS: dict[str, PlanOptions] = {"defaults": {}, "greedy": GREEDY_OPTIONS}


def plan_record(plan: Plan) -> dict[str, Any]:
    """What a plan decoded: its steps, text, finish reason, generated tokens and notes."""
    steps = [
        {"name": s.name, "arguments": s.arguments}
        if isinstance(s, ToolCall)
        else {"name": s.name, "raw": s.raw, "reason": s.reason}
        for s in plan.steps
    ]
    return {
        "steps": steps,
        "text": plan.text,
        "finish_reason": plan.finish_reason,
        "generated_tokens": plan.usage.get("generated_tokens"),
        "notes": plan.notes,
    }


def record(mem: AgentMem, out_path: Path, settings: list[str]) -> dict[str, dict[str, Any]]:
    """Every recorded request's plan, keyed by setting, then by request set and request;
    written to ``out_path`` after each set (so a long run leaves what it has done)."""
    sets = {
        "held-1": [e["query"] for e in demo.held_out_examples(seed=1)],
        "held-2": [e["query"] for e in demo.held_out_examples(seed=2)],
        "no-tool": list(demo.NO_TOOL_REQUESTS),
    }
    out: dict[str, dict[str, Any]] = {}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    for name in settings:
        out[name] = {}
        for part, requests in sets.items():
            plans = mem.plan_batch(requests, **SETTINGS[name])
            out[name][part] = [{"request": r, **plan_record(p)} for r, p in zip(requests, plans)]
            out_path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            print(f"{name} {part}: {len(plans)} plans", flush=True)
    return out


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Each recorded plan that differs between two recordings, in words."""
    lines = []
    for name in old.keys() & new.keys():
        for part in old[name].keys() & new[name].keys():
            for before, after in zip(old[name][part], new[name][part]):
                if before != after:
                    lines.append(f"{name} {part} {before['request']!r}:\n  before {before}\n  after  {after}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    parser.add_argument("--bank", type=Path, required=True, help="bank folder: loaded if it exists, else learned")
    parser.add_argument("--out", type=Path, required=True, help="where to write the plans (JSON)")
    parser.add_argument("--compare", type=Path, help="an earlier recording to compare with")
    parser.add_argument(
        "--settings", default=",".join(SETTINGS), help=f"which settings to record (default: {','.join(SETTINGS)})"
    )
    args = parser.parse_args(argv)

    base = load_backbone(args.backbone)
    if (args.bank / "bank.json").exists():
        mem = AgentMem.load(args.bank, backbone=base)  # the bank carries its adapter
    else:
        adapter = shipped_adapter(args.backbone)
        mem = AgentMem(apply_adapter(base, adapter) if adapter is not None else base)
        learn_demo_pack(mem)
        mem.save(args.bank)
    plans = record(mem, args.out, [s.strip() for s in args.settings.split(",")])
    if args.compare is None:
        return 0
    changed = differences(json.loads(args.compare.read_text(encoding="utf-8")), plans)
    print("\n".join(changed) or "every plan is the same")
    return 1 if changed else 0


if __name__ == "__main__":
    raise SystemExit(main())
