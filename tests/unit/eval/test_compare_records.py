"""compare_records: paired per-turn differences with a bootstrap interval over conversations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentmem.eval import compare_records


def _records(path: Path, conversations: dict[str, list[tuple[float, float, float]]]) -> Path:
    keys = compare_records.SCORES
    path.write_text(
        json.dumps(
            {
                "row": "defaults",
                "conversations": [
                    {"id": cid, "turns": [{"scores": dict(zip(keys, scores))} for scores in turns]}
                    for cid, turns in conversations.items()
                ],
            }
        )
    )
    return path


def test_a_difference_in_every_conversation_has_an_interval_clear_of_zero(tmp_path: Path) -> None:
    a = _records(tmp_path / "a.json", {f"c{i}": [(0.0, 0.0, 0.0), (1.0, 0.5, 0.0)] for i in range(8)})
    b = _records(tmp_path / "b.json", {f"c{i}": [(1.0, 0.0, 0.0), (1.0, 0.5, 0.0)] for i in range(8)})
    pair = compare_records.paired(compare_records.read_turns(a), compare_records.read_turns(b), "a", "b")
    tool, argument, exact = compare_records.compare([pair], resamples=200)
    assert (tool.a, tool.b, tool.delta) == (0.5, 1.0, 0.5)
    assert tool.low == tool.high == 0.5  # every conversation gains the same
    assert (tool.better, tool.worse, tool.same) == (8, 0, 8)
    assert argument.delta == exact.delta == 0.0 and argument.low == argument.high == 0.0


def test_a_gain_in_one_conversation_of_many_is_not_told_from_noise(tmp_path: Path) -> None:
    same = {f"c{i}": [(0.5, 0.5, 0.0)] for i in range(1, 12)}
    a = _records(tmp_path / "a.json", {"c0": [(0.0, 0.0, 0.0)] * 3, **same})
    b = _records(tmp_path / "b.json", {"c0": [(1.0, 1.0, 1.0)] * 3, **same})
    pair = compare_records.paired(compare_records.read_turns(a), compare_records.read_turns(b), "a", "b")
    tool = compare_records.compare([pair], resamples=500)[0]
    assert tool.delta == pytest.approx(3 / 14)
    assert tool.low == 0.0 < tool.delta < tool.high  # resamples without c0 gain nothing


def test_records_of_different_turns_are_refused_by_name(tmp_path: Path) -> None:
    a = _records(tmp_path / "a.json", {"c0": [(1.0, 1.0, 1.0)], "c1": [(1.0, 1.0, 1.0)]})
    b = _records(tmp_path / "b.json", {"c0": [(1.0, 1.0, 1.0)], "c2": [(1.0, 1.0, 1.0)]})
    with pytest.raises(ValueError, match="c1 turn 0.*c2 turn 0"):
        compare_records.paired(compare_records.read_turns(a), compare_records.read_turns(b), "a", "b")


def test_the_command_pools_pairs_and_rejects_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _records(tmp_path / "a.json", {"c0": [(0.0, 0.0, 0.0)], "c1": [(1.0, 0.0, 0.0)]})
    b = _records(tmp_path / "b.json", {"c0": [(1.0, 0.0, 0.0)], "c1": [(1.0, 0.0, 0.0)]})
    out = tmp_path / "report" / "compare.md"
    assert compare_records.main([str(a), str(b), str(a), str(b), "--resamples", "50", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "4 turns, 2 pair(s)" in printed and "| tool_f1 | 0.500 | 1.000 | +0.500 |" in printed
    assert out.read_text() == printed
    with pytest.raises(SystemExit) as odd:
        compare_records.main([str(a)])
    assert odd.value.code == 2
    (tmp_path / "bad.json").write_text('{"row": "x"}')
    with pytest.raises(SystemExit) as bad:
        compare_records.main([str(a), str(tmp_path / "bad.json")])
    assert bad.value.code == 2
    assert "no 'conversations' or 'requests' list" in capsys.readouterr().err


def test_request_records_of_other_requests_are_not_paired(tmp_path: Path) -> None:
    def requests(path: Path, texts: list[str]) -> Path:
        scores = dict.fromkeys(compare_records.SCORES, 1.0)
        path.write_text(json.dumps({"requests": [{"request": t, "scores": scores} for t in texts]}))
        return path

    a = compare_records.read_turns(requests(tmp_path / "a.json", ["book a flight", "cancel it"]))
    same = compare_records.read_turns(requests(tmp_path / "b.json", ["book a flight", "cancel it"]))
    other = compare_records.read_turns(requests(tmp_path / "c.json", ["book a flight", "rent a car"]))
    assert len(compare_records.paired(a, same, "a", "b")) == 2
    with pytest.raises(ValueError, match="record different turns.*rent a car"):
        compare_records.paired(a, other, "a", "c")  # as many requests, but other ones: another split
