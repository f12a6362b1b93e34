"""The lever bench's rows: each lever measured alone against every lever off; its records."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from agentmem.core import AgentMem
from agentmem.decoding.policies import FallBackToText
from agentmem.decoding.settings import LEVERS, PRESETS
from agentmem.eval import bench_levers
from agentmem.eval.agent import MAX_ROUNDS
from agentmem.eval.bench_levers import lever_rows, main, record_name, records_summary
from agentmem.eval.bfcl import load_bfcl, split_conversations
from agentmem.eval.methods import Prediction


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


def test_on_top_rows_set_a_bonus_lever_to_each_value_given_and_baselines_can_be_left_out():
    rows = lever_rows(alone=(), on_top=(("copy_bias", 1.0), ("copy_bias", 0.5)), baselines=False)
    assert [label for label, _, _ in rows] == ["defaults, copy_bias 1", "defaults, copy_bias 0.5"]
    defaults = {k: getattr(PRESETS["defaults"], k) for k in LEVERS}
    assert [options for _, options, _ in rows] == [{**defaults, "copy_bias": 1.0}, {**defaults, "copy_bias": 0.5}]
    assert record_name(rows[1][0]) == "defaults-copy_bias-0-5.json"


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ("copy_bias=x", "copy_bias=VALUE takes a number, got 'x'"),
        ("fall_back_to_text=1", "fall_back_to_text is on or off, not a value"),
        ("copy_biass=1", "not levers: copy_biass"),
    ],
)
def test_on_top_values_are_checked_before_anything_is_learned(capsys, entry, error):
    with pytest.raises(SystemExit) as exit:
        main(["--dataset", "bfcl-multi-turn", "--alone", "", "--on-top", entry])
    assert exit.value.code == 2
    assert error in capsys.readouterr().err


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


def _turn(gold: int, calls: int, plans: int) -> dict:
    call = {"name": "f", "arguments": {}}
    return {"gold": [call] * gold, "calls": [call] * calls, "plans": plans}


def test_the_records_summary_counts_turns_at_the_round_limit_and_calls_against_gold_calls():
    turns = [_turn(2, 2, 2), _turn(1, 4, 4), _turn(0, 0, 1), _turn(3, 1, 5), _turn(1, 0, 1)]
    assert records_summary(turns, max_rounds=4) == {
        "turns": 5,
        "max_rounds": 4,
        "turns_at_round_limit": 2,  # 4 plans, and 5 (beyond the limit all the same)
        "calls": 7,
        "gold_calls": 7,
    }
    # a request planned once (a NESTFUL subset): no round limit to reach
    once = records_summary([_turn(2, 1, 1)], max_rounds=None)
    assert once["turns_at_round_limit"] is None and (once["calls"], once["gold_calls"]) == (1, 2)
    assert records_summary([], 4) == {
        "turns": 0,
        "max_rounds": 4,
        "turns_at_round_limit": 0,
        "calls": 0,
        "gold_calls": 0,
    }


def test_records_files_are_named_after_their_rows():
    assert record_name("defaults") == "defaults.json"
    assert record_name("all levers off") == "all-levers-off.json"
    assert record_name("levers off, fall_back_to_text at 0.3") == "levers-off-fall_back_to_text-at-0-3.json"


def test_records_holds_every_rows_per_turn_records_and_their_summary(tiny, tmp_path, monkeypatch, capsys):
    """The BFCL dev conversations run by a planner that writes each turn's gold calls: once
    with the defaults (then a resumed plan that ends), and on and on with every lever off
    (to the round limit)."""
    data = load_bfcl()
    _, dev, _ = split_conversations(data.conversations, 0)
    gold = {c.turns[t][-1]["content"]: c.gold[t] for c in data.conversations for t in range(len(c.turns))}

    def oracle(again: bool):
        def plan(requests, tools):
            out = []
            for messages in requests:
                last_user = next(m for m in reversed(messages) if m["role"] == "user")["content"]
                calls = [] if messages[-1]["role"] == "tool" and not again else gold[last_user]
                out.append(Prediction(calls=calls, invalid=[], prompt_tokens=1, generated_tokens=1))
            return out

        return plan

    monkeypatch.setattr(bench_levers, "load_backbone", lambda name: tiny)
    monkeypatch.setattr(bench_levers, "_fitted", lambda *a: (SimpleNamespace(memory=AgentMem(tiny)), "no bank"))
    off = {k: getattr(PRESETS["levers_off"], k) for k in LEVERS}
    monkeypatch.setattr(bench_levers, "planner", lambda method, inventory, options: (oracle(options == off), True))
    records = tmp_path / "records"
    argv = ["--dataset", "bfcl-multi-turn", "--alone", "", "--irrelevance", "0", "--out", str(tmp_path)]
    assert main([*argv, "--records", str(records)]) == 0

    assert sorted(p.name for p in records.iterdir()) == ["all-levers-off.json", "defaults.json"]
    turns_in_dev = sum(len(c.turns) for c in dev)
    tool_turns = sum(bool(g) for c in dev for g in c.gold)
    gold_calls = sum(len(g) for c in dev for g in c.gold)
    defaults = json.loads((records / "defaults.json").read_text())
    assert (defaults["row"], defaults["dataset"], defaults["part"]) == ("defaults", "bfcl-multi-turn", "dev")
    assert [r["id"] for r in defaults["conversations"]] == [c.id for c in dev]
    first = defaults["conversations"][0]
    assert "state_match" in first and len(first["turns"]) == len(dev[0].turns)
    turn = first["turns"][0]
    assert turn["request"] == dev[0].turns[0][-1]["content"]
    assert {"gold", "calls", "invalid", "text", "plans", "words", "scores"} <= turn.keys()
    assert turn["calls"] == turn["gold"] == dev[0].gold[0]
    assert turn["scores"] == {"tool_f1": 1.0, "argument_f1": 1.0, "exact_match": 1.0}
    assert defaults["summary"] == {
        "turns": turns_in_dev,
        "max_rounds": MAX_ROUNDS,
        "turns_at_round_limit": 0,
        "calls": gold_calls,
        "gold_calls": gold_calls,
    }
    summary = json.loads((records / "all-levers-off.json").read_text())["summary"]
    # every tool turn writes its gold calls in each of its MAX_ROUNDS plans
    assert summary["turns_at_round_limit"] == tool_turns and summary["calls"] == MAX_ROUNDS * gold_calls

    out = capsys.readouterr().out
    assert f"records: {records / 'defaults.json'}: turns {turns_in_dev}" in out
    record = next(tmp_path.glob("levers-*.md")).read_text()
    assert f"| defaults | {turns_in_dev} | 0 (limit {MAX_ROUNDS}) | {gold_calls} | {gold_calls} |" in record


def test_records_of_a_nestful_subset_hold_one_plan_a_request(tiny, tmp_path, monkeypatch):
    """A planner that answers the first request in words and writes the gold calls of the others."""
    prepared = []
    real = bench_levers.prepare_data
    monkeypatch.setattr(bench_levers, "prepare_data", lambda config: prepared.append(real(config)) or prepared[-1])
    mem = AgentMem(tiny)

    def plan_batch(queries, tool_choice, **options):
        gold = {ex["query"]: ex["calls"] for ex in prepared[0].test}
        calls = [[{"function": {"name": c["name"], "arguments": c["arguments"]}} for c in gold[q]] for q in queries]
        text = ["in words"] + [""] * (len(queries) - 1)
        return [
            {"tool_calls": c if t == "" else [], "invalid_tool_calls": [], "text": t, "usage": {}}
            for c, t in zip(calls, text)
        ]

    mem.plan_batch = plan_batch
    monkeypatch.setattr(bench_levers, "plan_to_dict", lambda plan: plan)
    monkeypatch.setattr(bench_levers, "load_backbone", lambda name: tiny)
    monkeypatch.setattr(bench_levers, "_fitted", lambda *a: (SimpleNamespace(memory=mem), "no bank"))
    argv = ["--dataset", "complexfuncbench", "--limit", "5", "--alone", "", "--out", str(tmp_path)]
    assert main([*argv, "--records", str(tmp_path / "records")]) == 0

    saved = json.loads((tmp_path / "records" / "defaults.json").read_text())
    requests = saved["requests"]
    assert saved["max_rounds"] is None and len(requests) == 5
    first, second = requests[0], requests[1]
    assert first["words"] and first["calls"] == [] and first["text"] == "in words" and first["gold"]
    assert first["scores"] == {"tool_f1": 0.0, "argument_f1": 0.0, "exact_match": 0.0}
    assert second["calls"] == second["gold"] and second["scores"]["tool_f1"] == 1.0 and second["plans"] == 1
    gold_calls = sum(len(r["gold"]) for r in requests)
    assert saved["summary"] == {
        "turns": 5,
        "max_rounds": None,
        "turns_at_round_limit": None,
        "calls": gold_calls - len(first["gold"]),
        "gold_calls": gold_calls,
    }
    assert (
        f"| defaults | 5 | - | {gold_calls - len(first['gold'])} | {gold_calls} |"
        in next(tmp_path.glob("levers-*.md")).read_text()
    )


def test_a_learn_seed_learns_another_bank_on_the_same_nestful_split(tiny, tmp_path, monkeypatch):
    fitted = []
    mem = AgentMem(tiny)
    mem.plan_batch = lambda queries, tool_choice, **options: [
        {"tool_calls": [], "invalid_tool_calls": [], "text": "", "usage": {}} for _ in queries
    ]
    monkeypatch.setattr(bench_levers, "plan_to_dict", lambda plan: plan)
    monkeypatch.setattr(bench_levers, "load_backbone", lambda name: tiny)
    monkeypatch.setattr(
        bench_levers,
        "_fitted",
        lambda base, settings, bank, train, inventory: (
            fitted.append((settings.seed, train)) or (SimpleNamespace(memory=mem), "no bank")
        ),
    )
    requests = []
    for learn_seed in ("0", "3"):
        records = tmp_path / f"records-{learn_seed}"
        argv = ["--dataset", "complexfuncbench", "--limit", "5", "--alone", "", "--out", str(tmp_path)]
        assert main([*argv, "--learn-seed", learn_seed, "--records", str(records)]) == 0
        requests.append([r["request"] for r in json.loads((records / "defaults.json").read_text())["requests"]])
    (seed_a, train_a), (seed_b, train_b) = fitted
    assert (seed_a, seed_b) == (0, 3)  # learning is seeded by --learn-seed...
    assert train_a == train_b and requests[0] == requests[1]  # ...the training data and the dev part by --seed
