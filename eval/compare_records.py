"""Two runs' per-turn records compared turn by turn, with how far the difference could be noise.

BFCL's development part is 46 turns of 12 conversations, and two banks learned with
different seeds already differ by several points of tool F1 (BENCHMARKS.md, "A new machine").
So a difference between two rows of `bench_levers` (or two banks) says little without its
spread. This reads two records files that `bench_levers --records` wrote for the same turns
(a lever on and off, two learning settings, ...) and reports, for each turn score:

* the mean of each run and their difference (B - A);
* a 90% interval of that difference from a bootstrap over **conversations** (turns of one
  conversation share its history, so they are resampled together; a single-plan data set's
  requests are resampled one by one);
* how many turns B scores higher, lower and the same.

Several pairs (``A1 B1 A2 B2 ...``: the same comparison on banks of two learning seeds) are
pooled: each pair's conversations are resampled within it, so the interval covers both.

    python -m agentmem.eval.compare_records runs/rec-s0/defaults.json runs/rec-mix-s0/defaults.json
    python -m agentmem.eval.compare_records A0.json B0.json A1.json B1.json --out runs/compare.md

An interval that holds 0 means the runs are not told apart on these turns.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The per-turn scores compared, as `bench_levers --records` writes them (each in [0, 1]).
SCORES = ("tool_f1", "argument_f1", "exact_match")


@dataclass(frozen=True)
class Turn:
    """One scored turn: the group it is resampled with (a conversation) and its scores."""

    group: str
    key: str
    scores: dict[str, float]


def read_turns(path: Path) -> list[Turn]:
    """The scored turns of a records file (conversations or single requests).

    Raises:
        ValueError: The file is not a records file of `bench_levers --records` (names it).
    """
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a readable JSON records file ({error})") from None
    turns: list[Turn] = []
    if isinstance(recorded, dict) and isinstance(recorded.get("conversations"), list):
        for conversation in recorded["conversations"]:
            cid = str(conversation["id"])
            for i, turn in enumerate(conversation["turns"]):
                turns.append(Turn(cid, f"{cid} turn {i}", _scores(path, turn)))
    elif isinstance(recorded, dict) and isinstance(recorded.get("requests"), list):
        for i, request in enumerate(recorded["requests"]):
            # keyed by its text too: two runs on differently drawn requests are not the same turns
            text = request.get("request") if isinstance(request, dict) else None
            turns.append(Turn(str(i), f"request {i}: {text!r}", _scores(path, request)))
    else:
        raise ValueError(f"{path}: no 'conversations' or 'requests' list (write records with bench_levers --records)")
    return turns


def _scores(path: Path, turn: dict[str, Any]) -> dict[str, float]:
    scores = turn.get("scores") if isinstance(turn, dict) else None
    if not isinstance(scores, dict) or any(not isinstance(scores.get(k), (int, float)) for k in SCORES):
        raise ValueError(f"{path}: a turn without its scores {list(SCORES)}")
    return {k: float(scores[k]) for k in SCORES}


def paired(a: Sequence[Turn], b: Sequence[Turn], a_name: str, b_name: str) -> list[tuple[Turn, Turn]]:
    """The turns of ``a`` and ``b`` side by side; raises ValueError if they are not the same turns."""
    if [t.key for t in a] != [t.key for t in b]:
        only_a = [key[:80] for key in sorted({t.key for t in a} - {t.key for t in b})[:3]]
        only_b = [key[:80] for key in sorted({t.key for t in b} - {t.key for t in a})[:3]]
        raise ValueError(
            f"{a_name} and {b_name} record different turns ({len(a)} against {len(b)}; only in the first: "
            f"{only_a or 'none'}, only in the second: {only_b or 'none'}); compare runs of the same part"
        )
    return list(zip(a, b))


@dataclass(frozen=True)
class Difference:
    """One score compared over the pooled turns."""

    score: str
    a: float
    b: float
    low: float
    high: float
    better: int
    worse: int
    same: int

    @property
    def delta(self) -> float:
        return self.b - self.a


def compare(pairs: Sequence[Sequence[tuple[Turn, Turn]]], resamples: int = 2000, seed: int = 0) -> list[Difference]:
    """Each score's means, difference and 90% bootstrap interval over the pooled ``pairs``
    (each a list of paired turns; its groups are resampled within it)."""
    if not pairs or any(not p for p in pairs):
        raise ValueError("nothing to compare: every pair of records needs at least one turn")
    rng = random.Random(seed)
    # per pair: each group's summed differences (B - A) and turn count, so a resample's mean
    # difference is a sum over the groups drawn
    groups: list[list[tuple[dict[str, float], int]]] = []
    for p in pairs:
        by_group: dict[str, tuple[dict[str, float], int]] = {}
        for ta, tb in p:
            summed, n = by_group.get(ta.group, (dict.fromkeys(SCORES, 0.0), 0))
            by_group[ta.group] = ({k: summed[k] + tb.scores[k] - ta.scores[k] for k in SCORES}, n + 1)
        groups.append(list(by_group.values()))
    turns = [pair for p in pairs for pair in p]
    deltas: dict[str, list[float]] = {k: [] for k in SCORES}
    for _ in range(resamples):
        drawn = [g for pair_groups in groups for g in rng.choices(pair_groups, k=len(pair_groups))]
        count = sum(n for _, n in drawn)
        for k in SCORES:
            deltas[k].append(sum(summed[k] for summed, _ in drawn) / count)
    out = []
    for k in SCORES:
        ranked = sorted(deltas[k])
        out.append(
            Difference(
                score=k,
                a=sum(ta.scores[k] for ta, _ in turns) / len(turns),
                b=sum(tb.scores[k] for _, tb in turns) / len(turns),
                low=ranked[int(0.05 * (len(ranked) - 1))],
                high=ranked[int(0.95 * (len(ranked) - 1))],
                better=sum(tb.scores[k] > ta.scores[k] for ta, tb in turns),
                worse=sum(tb.scores[k] < ta.scores[k] for ta, tb in turns),
                same=sum(tb.scores[k] == ta.scores[k] for ta, tb in turns),
            )
        )
    return out


def table(differences: Sequence[Difference], turns: int, pairs: int) -> str:
    """The comparison as a markdown table."""
    lines = [
        f"{turns} turns, {pairs} pair(s) of runs; 90% interval from a bootstrap over conversations",
        "",
        "| score | A | B | B - A | 90% interval | turns B higher / lower / same |",
        "|---|---|---|---|---|---|",
    ]
    for d in differences:
        lines.append(
            f"| {d.score} | {d.a:.3f} | {d.b:.3f} | {d.delta:+.3f} | [{d.low:+.3f}, {d.high:+.3f}] "
            f"| {d.better} / {d.worse} / {d.same} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", nargs="+", type=Path, help="records files in pairs: A1 B1 [A2 B2 ...]")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    if len(args.records) % 2:
        parser.error(f"records come in pairs (A B ...); got {len(args.records)} files")
    if args.resamples < 1:
        parser.error(f"--resamples must be >= 1, got {args.resamples}")
    try:
        pairs = [
            paired(read_turns(a), read_turns(b), str(a), str(b)) for a, b in zip(args.records[::2], args.records[1::2])
        ]
        text = table(compare(pairs, args.resamples, args.seed), sum(len(p) for p in pairs), len(pairs))
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")
    print(text, end="")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
