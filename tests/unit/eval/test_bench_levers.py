"""The lever bench's rows: each lever measured alone against every lever off."""

from __future__ import annotations

import pytest

from agentmem.decoding.policies import FallBackToText
from agentmem.decoding.settings import LEVERS, PRESETS
from agentmem.eval.bench_levers import lever_rows, main


def test_each_lever_is_measured_alone_against_every_lever_off():
    rows = {label: (options, share) for label, options, share in lever_rows()}
    # levers are on by default (unique_enum_items, route_by_last_turn, strip_leading_space): two rows
    off = rows["all levers off"][0]
    assert dict(off) == {k: getattr(PRESETS["levers_off"], k) for k in LEVERS}
    assert dict(rows["defaults"][0]) == {k: getattr(PRESETS["defaults"], k) for k in LEVERS}
    for lever in LEVERS:
        alone = rows[f"levers off, {lever} on"][0]
        assert [k for k in LEVERS if alone[k] != off[k]] == [lever]
        assert alone[lever] == getattr(PRESETS["levers_on"], lever)
    assert {share for _, share in rows.values()} == {FallBackToText.share}
    assert len(rows) == 2 + len(LEVERS)
    assert [label for label, _, _ in lever_rows(alone=())] == ["defaults", "all levers off"]


def test_leave_one_out_and_fall_back_shares_add_rows():
    rows = lever_rows(leave_one_out=True, shares=(0.3, 0.7))
    assert len(rows) == 2 + 2 * len(LEVERS) + 2
    shared = [(options, share) for label, options, share in rows if "at 0." in label]
    assert [share for _, share in shared] == [0.3, 0.7]
    assert all(options["fall_back_to_text"] and not options["reroute_unfounded"] for options, _ in shared)


def test_on_top_rows_turn_one_lever_on_over_the_defaults():
    lever = next(k for k in LEVERS if not getattr(PRESETS["defaults"], k))  # one that is off by default
    rows = lever_rows(alone=(), on_top=(lever,))
    assert [label for label, _, _ in rows] == ["defaults", "all levers off", f"defaults, {lever} on"]
    defaults, on_top = rows[0][1], rows[2][1]
    assert [k for k in LEVERS if on_top[k] != defaults[k]] == [lever]
    assert on_top[lever] == getattr(PRESETS["levers_on"], lever)


def test_on_top_names_a_lever_already_on_by_default_is_the_parsers_error(capsys):
    lever = next(k for k in LEVERS if getattr(PRESETS["defaults"], k))  # one that is on by default
    with pytest.raises(SystemExit) as exit:
        main(["--dataset", "bfcl-multi-turn", "--alone", "", "--on-top", lever])
    assert exit.value.code == 2
    assert f"already on by default: {lever}" in capsys.readouterr().err


def test_planning_weights_outside_the_allowed_ones_are_the_parsers_error(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--dataset", "bfcl-multi-turn", "--weights", "bf16"])
    assert exit.value.code == 2 and "float32, int8, bfloat16" in capsys.readouterr().err.replace("'", "")
