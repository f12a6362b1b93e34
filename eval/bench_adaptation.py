"""Accuracy on the demo pack with and without the adaptation phase.

Both runs learn the same memory tokens in the same way as ``agentmem demo`` (the 4 demo
tools from 20 single-call examples each, plus 40 two-call requests; `TrainConfig`
defaults), on the embedded backbone once plain and once with an adapter merged (default:
the one shipped for it), then plan the demo pack's held-out requests (templates and values
never seen in training: 32 single-call, 8 two-call) and score them. The adaptation corpus
shares no tool with the demo pack (`agentmem.adaptation.corpus`), so any gain is transfer.

Results print as a Markdown table and are appended (with machine and date) to
``runs/adaptation-<date>.md``; BENCHMARKS.md quotes them.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from agentmem import runinfo
from agentmem.adaptation.adapter import Adapter, shipped_adapter
from agentmem.adaptation.resolve import resolve_backbone
from agentmem.backbone import DEFAULT_BACKBONE, load_backbone
from agentmem.core import AgentMem
from agentmem.eval.bench_decoding import learn_demo_pack, score_plans
from agentmem.tools import demo


def demo_accuracy(mem: AgentMem, examples_per_tool: int = 20, multi: int = 40) -> dict[str, Any]:
    """Learns the demo pack into ``mem`` and scores its held-out requests.

    Returns:
        Tool F1, argument F1, exact match and schema-valid rate for all, single-call and
        two-call requests, and the training report.
    """
    report = learn_demo_pack(mem, examples_per_tool, multi)
    held = demo.held_out_examples()
    return {"report": report, **score_plans(held, mem.plan_batch([e["query"] for e in held]))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    parser.add_argument("--adapter", type=Path, help="adapter folder (default: the one shipped for the backbone)")
    parser.add_argument("--out", type=Path, default=Path("runs"))
    args = parser.parse_args(argv)

    adapter = Adapter.load(args.adapter) if args.adapter else shipped_adapter(args.backbone)
    if adapter is None:
        parser.error(f"no adapter shipped for {args.backbone!r}; pass --adapter")
    base = load_backbone(args.backbone)
    rows = []
    for label, backbone in [("plain", base), (f"adapted ({adapter.id[:15]})", resolve_backbone(base, adapter))]:
        started = time.perf_counter()
        result = demo_accuracy(AgentMem(backbone))
        seconds = time.perf_counter() - started
        cells = [f"{result[p].tool_f1:.3f} / {result[p].argument_f1:.3f}" for p in ("all", "single", "two-call")]
        rows.append(
            [
                label,
                *cells,
                f"{result['all'].exact_match:.3f}",
                f"{result['all'].schema_valid_rate:.2f}",
                f"{result['report'].last_loss:.3f}",
                f"{seconds:.0f} s",
            ]
        )
        print(runinfo.table_row(rows[-1]), flush=True)

    today = runinfo.today()
    source = args.adapter or f"shipped for {args.backbone}"
    header = "backbone | tool F1 / arg F1 (all 40) | single-call (32) | two-call (8) | exact match | schema-valid | final loss | time"
    text = runinfo.record(
        runinfo.heading("Demo pack with and without adaptation", today, runinfo.machine(base.device)),
        f"`{runinfo.command('agentmem.eval.bench_adaptation', argv)}` on {args.backbone}, "
        f"adapter {adapter.id} ({source}; `{adapter.training.get('command', 'command not recorded')}`).",
        runinfo.table(header.split(" | "), rows),
    )
    runinfo.append_record(text, args.out / f"adaptation-{today}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
