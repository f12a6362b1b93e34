"""Where a BFCL run's argument values are lost: not planned at all, or planned and written wrong.

`value_sources` traces each gold value to where the gold conversation first writes it (the
turn's messages, earlier turns, the turn's own earlier results, nowhere verbatim). This
reads the per-turn records `bench_levers --records` wrote for BFCL and splits each source's
values three ways (`agentmem.eval.agent.value_recall`; `agentmem eval` reports the totals
per method):

* **call planned**: the turn's plan holds a call of the gold call's tool;
* **written**: such a call holds the value under the same argument (a list argument: as
  one of its items);
* the rest are in calls the plan never made.

So a low argument F1 can be told apart into tools not chosen (routing) and values not
found (copying, reading the conversation). A second table counts each turn's gold tools by
how often the training turns call them, and how many of them the plans made. Several records
files are pooled (the banks of several learning seeds):

    python -m agentmem.eval.value_recall runs/rec-s0/defaults.json runs/rec-s1/defaults.json
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentmem import runinfo
from agentmem.eval.agent import recall_total, training_turns, value_recall
from agentmem.eval.bfcl import BFCLData, load_bfcl, split_conversations

HEADER = ["where the gold value is first written", "values", "call planned", "written", "written / planned"]
#: How often the training turns call a tool, in bands (`calls_by_training`).
BANDS = ((0, 0), (1, 5), (6, 9), (10, None))
BAND_HEADER = [
    "tool's calls in the training turns",
    "tools",
    "gold tools of a turn",
    "planned",
    "calls of tools the turn does not need",
]


def calls_by_training(records: Sequence[dict[str, Any]], data: BFCLData, seed: int) -> list[list[Any]]:
    """Table rows (`BAND_HEADER`): each turn's gold tools (as a set, as tool F1 counts them)
    of ``records``, by how often the training turns of split ``seed`` call them (`BANDS`),
    and how many the plans made; and the tools the plans called that their turn's gold does
    not hold, by their band."""
    train, _, _ = split_conversations(data.conversations, seed)
    shown = Counter(c["name"] for ex in training_turns(train, data, True) for c in ex["calls"])

    def band(tool: str) -> int:
        return next(
            i for i, (low, high) in enumerate(BANDS) if shown[tool] >= low and (high is None or shown[tool] <= high)
        )

    gold, planned, other = Counter(), Counter(), Counter()
    for record in records:
        for turn in record["turns"]:
            wanted, made = {c["name"] for c in turn["gold"]}, {c["name"] for c in turn["calls"]}
            for tool in wanted:
                gold[band(tool)] += 1
                planned[band(tool)] += tool in made
            for tool in made - wanted:
                other[band(tool)] += 1
    tools = Counter(band(tool) for tool in data.tools)
    return [
        [
            f"{low}" if low == high else f"{low}-{high}" if high else f"{low} or more",
            tools[i],
            gold[i],
            planned[i],
            other[i],
        ]
        for i, (low, high) in enumerate(BANDS)
    ]


def recall_rows(counts: dict[str, dict[str, int]]) -> list[list[str]]:
    """`value_recall`'s counts as table rows (`HEADER`), with a total."""
    rows = []
    for label, c in [*counts.items(), ("all", recall_total(counts))]:
        share = f"{c['written'] / c['call_planned']:.2f}" if c["call_planned"] else "-"
        rows.append([label, str(c["values"]), str(c["call_planned"]), str(c["written"]), share])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", type=Path, nargs="+", help="BFCL records files (bench_levers --records), pooled")
    parser.add_argument("--seed", type=int, default=0, help="the split the records' bank learned (bench_levers --seed)")
    args = parser.parse_args(argv)
    try:
        files = [json.loads(path.read_text()) for path in args.records]
        if any("conversations" not in f for f in files):
            raise ValueError("value_recall reads BFCL records (per conversation), not a NESTFUL subset's")
        records = [r for f in files for r in f["conversations"]]
        data = load_bfcl()
        counts = value_recall(records, data)
    except (OSError, ValueError, KeyError) as error:
        parser.error(f"{type(error).__name__}: {error}")
    print("\n".join(runinfo.table(HEADER, recall_rows(counts))))
    print()
    print("\n".join(runinfo.table(BAND_HEADER, calls_by_training(records, data, args.seed))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
