"""The executed agent evaluation on BFCL v4 multi-turn: ``agentmem eval --dataset bfcl-multi-turn``.

Data: the development domains only (`agentmem.eval.bfcl`: the held-out classes are never
read), split by conversation (35 train, 12 dev, 12 test; the dev part is kept for fitting
decoding thresholds and is not used here).

Training (every method alike): one example per training turn with calls, built by running
the gold conversation: the conversation so far (earlier user turns, the gold calls of
earlier turns as assistant ``tool_calls`` and their executed results as ``tool`` messages,
then the turn's messages) and the turn's gold calls. In the turn-alone mode the messages
are the turn's own only. TokMem learns from the messages (`AgentMem.learn_tools`: earlier
calls as memory tokens); the text baselines from `transcript`, the same conversation as
plain text, earlier calls written as they write calls (`render_plan`). The training turns
are capped at about ``train_per_tool`` per tool (`cap_per_tool`). With ``read_results``,
TokMem learns from each training turn as an agent's trace instead: cut before each call that
needs a value only the turn's own earlier results hold, each part with the results before it
in its messages, and a last part with no call after all the results (`training_turns`).

Agent run, on the test conversations: each turn's messages are appended to the
conversation, the method plans (with the conversation so far, or the turn alone), the
plan's calls are executed on the conversation's own API instances (`Session`, from its
``initial_config``) and appended with their results as tool messages; TokMem then plans
again from there (``resume=True``: its plan continues after its calls, `resumed_prompt_ids`;
shown their results when it learned to read them, `AgentMem.reads_results`) until a plan
makes no call, at most `MAX_ROUNDS` plans a turn; a text baseline writes its whole plan at
once (one plan a turn). A text answer is appended as the assistant's message.
Then the next user turn. Every method is given the tools BFCL gives the conversation (its
involved classes' functions): the prompt baselines list those only (RAG: those among its
top ``rag_k`` retrieved from all the tools), and TokMem routes among
them only (``plan(..., tools=...)``), so that no method loses a turn to another domain's tool.

TokMem plans exactly as `AgentMem.plan` does, with its defaults (``tool_choice="auto"``:
a plan may answer in words), and/or with every decoding lever off (``"off"`` in ``levers``,
`LEVERS_OFF`; row ``tokmem-levers-off``, planned by the same fitted bank): no
dataset-specific decoding setting.

Scores: per turn, the calls of all its plans against its gold calls (`agentmem.eval.metrics`:
tool F1, argument F1, exact match), by number of gold calls; per conversation, whether the
final state of its instances equals the state its gold calls produce (BFCL's state check);
turns answered in words (no call attempted in the turn's first plan). The inventory is the
tools some training turn calls; the test tool turns that call another (`unlearned_turns`) are
counted in the report, and the ceiling rows count them out; so are the places the test turns'
gold values are first written (`value_sources`). With
``irrelevance > 0``, that many requests of each of the wheel's irrelevance sets are planned
against all the development tools: the share answered in words (right) beside the share of
tool turns answered in words (wrong).
"""

from __future__ import annotations

import datetime
import json
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentmem import runinfo
from agentmem.backbone import Backbone
from agentmem.chat import call_messages, plan_to_dict
from agentmem.decoding.settings import preset_options
from agentmem.encoding import source_text
from agentmem.eval.bfcl import BFCLData, Conversation, Session, irrelevance_requests, load_bfcl, split_conversations
from agentmem.eval.datasets import cap_per_tool
from agentmem.eval.methods import (
    FitRecord,
    Method,
    MethodSettings,
    MethodUnavailableError,
    Prediction,
    build_method,
    check_methods,
)
from agentmem.eval.metrics import ceiling, score
from agentmem.eval.runner import RESULTS_FILE, write_json
from agentmem.eval.textplan import render_plan
from agentmem.eval.tokmem import TokMemMethod, plan_prediction

__all__ = [
    "BFCL_DATASET",
    "LEVERS_OFF",
    "MAX_ROUNDS",
    "AgentRunConfig",
    "evaluate",
    "irrelevance",
    "planner",
    "result_record",
    "run_agent",
    "run_conversations",
    "trained_tools",
    "training_turns",
    "turn_scores",
    "transcript",
]

BFCL_DATASET = "bfcl-multi-turn"
#: Most plans per turn (TokMem resumes after each plan that made calls).
MAX_ROUNDS = 4
#: `AgentMem.plan` options that switch every decoding lever off (the schema constraint stays).
LEVERS_OFF: dict[str, Any] = preset_options("levers_off")
Messages = list[dict[str, Any]]


@dataclass
class AgentRunConfig:
    """What to evaluate and how."""

    out: Path
    """Folder of results (created; a run recomputes everything)."""
    methods: tuple[str, ...] = ("icl", "rag", "lora", "tokmem")
    """Methods to run, in report order."""
    limit: int | None = None
    """Test conversations to run (a seeded sample); None for all 12."""
    context: bool = True
    """Plan with the conversation so far; False: with the turn's own messages only."""
    levers: tuple[str, ...] = ("defaults",)
    """TokMem's decoding, each a row of its own from one fit: ``"defaults"`` (what
    `AgentMem.plan` does) and/or ``"off"`` (`LEVERS_OFF`)."""
    train_per_tool: int | None = None
    """Cap the training turns at about this many per tool; None for all."""
    irrelevance: int = 0
    """Requests of each irrelevance set to plan (0: none)."""
    read_results: bool = False
    """TokMem learns from agent traces that go on after the turn's own results
    (`training_turns` with ``read_results``), and so reads its calls' results when it resumes."""
    backbone: str = "smollm2-135m"
    settings: MethodSettings = field(default_factory=MethodSettings)
    command: str = ""

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        check_methods(self.methods)
        if not self.levers or not set(self.levers) <= {"defaults", "off"}:
            raise ValueError(f"levers must be 'defaults', 'off' or both, got {self.levers!r}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")


def transcript(messages: Sequence[dict[str, Any]], schemas: dict[str, dict]) -> str:
    """A conversation as one plain-text request for the text baselines: a lone user message
    as it is; else one line per message (``User:``, ``Assistant:``, ``Tool result:``),
    earlier calls written as the baselines write calls (`render_plan`)."""
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"]
    lines = []
    for message in messages:
        role = message["role"]
        if role == "assistant" and message.get("tool_calls"):
            calls = [
                {"name": c["function"]["name"], "arguments": c["function"]["arguments"]} for c in message["tool_calls"]
            ]
            lines.append("Assistant called:\n" + render_plan(calls, schemas))
        elif role == "tool":
            lines.append(f"Tool result: {message['content']}")
        else:
            lines.append(f"{role.capitalize()}: {message['content']}")
    return "\n".join(lines)


def _call_messages(calls: Sequence[dict[str, Any]], results: Sequence[str], turn: int, start: int) -> Messages:
    """`call_messages` with ids that number the turn and the call in it."""
    return call_messages(calls, results, [f"call_{turn}_{start + k}" for k in range(len(calls))])


def training_turns(
    conversations: Sequence[Conversation], data: BFCLData, context: bool, read_results: bool = False
) -> list[dict[str, Any]]:
    """One example ``{"messages", "calls", "conversation", "turn"}`` per turn with gold calls,
    the gold conversation executed as it goes (module docstring).

    With ``read_results``, an agent's trace of the turn instead: the turn's calls are cut
    before each call that needs a value found only in the results of the turn's own earlier
    calls (`needs_result`), each part an example whose messages end in the results of the
    parts before it; then a last example whose messages hold all the turn's calls and
    results, with no call: the turn is done. A bank learned from these reads its calls'
    results when it resumes (`AgentMem.reads_results`)."""
    examples = []
    for conversation in conversations:
        session = Session(conversation, data.tool_class)
        history: Messages = []
        for t, (messages, gold) in enumerate(zip(conversation.turns, conversation.gold)):
            start = len(history)
            before = source_text(history)
            history.extend(dict(m) for m in messages)
            said = source_text(history[start:])
            results: list[str] = []
            parts = [0]  # where each part of the turn's calls starts
            for k, call in enumerate(gold):
                if read_results and k > parts[-1] and needs_result(call, said, before, " ".join(results)):
                    parts.append(k)
                results.append(session.execute(call["name"], call["arguments"]))
            if not gold:
                continue
            for first, end in zip(parts, [*parts[1:], len(gold)]):
                request = history if context else history[start:]
                examples.append(
                    {"messages": list(request), "calls": gold[first:end], "conversation": conversation.id, "turn": t}
                )
                history.extend(_call_messages(gold[first:end], results[first:end], t, first))
            if read_results:
                request = history if context else history[start:]
                examples.append({"messages": list(request), "calls": [], "conversation": conversation.id, "turn": t})
    return examples


def needs_result(call: dict[str, Any], said: str, before: str, results: str) -> bool:
    """Whether a gold call has a value written neither in its turn's messages (``said``) nor
    earlier in the conversation (``before``), but in the results of the turn's earlier calls."""
    return any(value_source(v, said, before, results) == VALUE_SOURCES[2] for v in leaf_values(call["arguments"]))


Planner = Callable[[list[Messages], list[str]], list[Prediction]]


def planner(method: Method, inventory: dict[str, dict], options: dict[str, Any] | None = None) -> tuple[Planner, bool]:
    """How a fitted method plans requests given as messages among some tools (TokMem with
    ``options`` for `AgentMem.plan`, none: its defaults), and whether it resumes after its calls."""
    if isinstance(method, TokMemMethod):
        memory = method.memory
        options = dict(options or {})

        def plan_tokmem(requests: list[Messages], tools: list[str]) -> list[Prediction]:
            plans = memory.plan_batch(
                requests,
                batch_size=method.settings.batch_size,
                tools=tools,
                resume=True,
                max_calls=method.settings.max_calls,  # 8 by default, as plan's
                **options,
            )
            return [plan_prediction(plan_to_dict(p)) for p in plans]

        return plan_tokmem, True
    schemas = {name: tool["parameters"] for name, tool in inventory.items()}

    def plan_text(requests: list[Messages], tools: list[str]) -> list[Prediction]:
        queries = [transcript(r, schemas) for r in requests]
        rank = getattr(type(method), "_tools_for", None)
        if rank is None:  # LoRA: no tool list in its prompt
            return method.predict(queries)
        # the prompt baselines list the conversation's tools only (RAG: those of its top-k)
        method._tools_for = lambda query: [n for n in rank(method, query) if n in tools]  # type: ignore[attr-defined]
        try:
            return method.predict(queries)
        finally:
            del method._tools_for  # type: ignore[attr-defined]

    return plan_text, False


def _new_turn(gold: list[dict]) -> dict[str, Any]:
    return {
        "gold": gold,
        "calls": [],
        "invalid": [],
        "text": "",
        "plans": 0,
        "words": False,
        "prompt_tokens": 0,
        "generated_tokens": 0,
    }


def run_conversations(
    conversations: Sequence[Conversation],
    data: BFCLData,
    plan: Planner,
    resumes: bool,
    context: bool,
    tools: dict[str, dict],
) -> list[dict[str, Any]]:
    """Runs each conversation as an agent (module docstring), all of them turn by turn
    together so that their plans are batched; one record per conversation."""
    sessions = [Session(c, data.tool_class) for c in conversations]
    histories: list[Messages] = [[] for _ in conversations]
    records = [{"id": c.id, "turns": []} for c in conversations]
    for t in range(max(len(c.turns) for c in conversations)):
        active = [i for i, c in enumerate(conversations) if t < len(c.turns)]
        starts = {}
        for i in active:
            starts[i] = len(histories[i])
            histories[i].extend(dict(m) for m in conversations[i].turns[t])
            records[i]["turns"].append(_new_turn(conversations[i].gold[t]))
        pending = active
        for _ in range(MAX_ROUNDS if resumes else 1):
            groups: dict[tuple[str, ...], list[int]] = {}
            for i in pending:
                allowed = tuple(n for n in data.tools_of(conversations[i]) if n in tools)
                groups.setdefault(allowed, []).append(i)
            pending = []
            for allowed, members in groups.items():
                requests = [histories[i] if context else histories[i][starts[i] :] for i in members]
                for i, prediction in zip(members, plan(requests, list(allowed))):
                    turn = records[i]["turns"][-1]
                    turn["words"] = turn["words"] or (
                        turn["plans"] == 0 and not prediction.calls and not prediction.invalid
                    )
                    turn["plans"] += 1
                    turn["invalid"].extend(prediction.invalid)
                    turn["prompt_tokens"] += prediction.prompt_tokens
                    turn["generated_tokens"] += prediction.generated_tokens
                    if prediction.calls:
                        results = [sessions[i].execute(c["name"], c["arguments"]) for c in prediction.calls]
                        histories[i].extend(_call_messages(prediction.calls, results, t, len(turn["calls"])))
                        turn["calls"].extend(prediction.calls)
                        pending.append(i)
                    elif prediction.text:
                        turn["text"] = prediction.text
                        histories[i].append({"role": "assistant", "content": prediction.text})
            if not pending:
                break
    for conversation, session, record in zip(conversations, sessions, records):
        gold = Session(conversation, data.tool_class)
        for turn in conversation.gold:
            for call in turn:
                gold.execute(call["name"], call["arguments"])
        record["state_match"] = _same(session.state(), gold.state())
    return records


def _same(a: Any, b: Any) -> bool:
    """States compared as BFCL compares them (``==``), JSON-normalised so that a tuple the
    API stored equals the list a plan wrote."""
    return json.loads(json.dumps(a, default=str)) == json.loads(json.dumps(b, default=str))


def turn_scores(turns: Sequence[dict[str, Any]]) -> dict[str, Any]:
    preds = [None if t["words"] and not t["calls"] else t["calls"] for t in turns]
    return score([t["gold"] for t in turns], preds, [len(t["invalid"]) for t in turns]).as_dict()


def irrelevance(plan: Planner, tools: list[str], requests: Sequence[Messages]) -> dict[str, Any]:
    """How many of ``requests`` (which need none of ``tools``) are answered in words."""
    predictions = plan([list(r) for r in requests], tools)
    words = [not p.calls and not p.invalid for p in predictions]
    return {"requests": len(requests), "answered_in_words": sum(words) / len(requests)}


def trained_tools(data: BFCLData, train: Sequence[dict[str, Any]]) -> dict[str, dict]:
    """The tools some training turn calls (the inventory every method learns), by name."""
    called = {c["name"] for ex in train for c in ex["calls"]}
    return {n: t for n, t in data.tools.items() if n in called}


def unlearned_turns(test: Sequence[Conversation], inventory: dict[str, dict]) -> dict[str, Any]:
    """The test tool turns that call a tool outside ``inventory`` (no training turn calls it,
    so no method learns it), and those tools: a ceiling no decoding can lift."""
    outside = [
        {c["name"] for c in gold} - inventory.keys() for conversation in test for gold in conversation.gold if gold
    ]
    return {
        "test_tool_turns": len(outside),
        "test_tool_turns_calling_unlearned_tools": sum(bool(names) for names in outside),
        "unlearned_tools": sorted(set().union(*outside)),
    }


#: Where a gold argument value is written before its call (`value_sources`), nearest first.
VALUE_SOURCES = ("this turn's messages", "earlier turns", "this turn's earlier results", "nowhere verbatim")


def leaf_values(value: Any) -> Iterator[Any]:
    """The scalar values of an argument (list items and object fields), booleans and nulls left out."""
    if isinstance(value, dict):
        for item in value.values():
            yield from leaf_values(item)
    elif isinstance(value, list):
        for item in value:
            yield from leaf_values(item)
    elif value is not None and not isinstance(value, bool):
        yield value


def value_source(value: Any, said: str, before: str, results: str) -> str:
    """Where a value is written first (`VALUE_SOURCES`): in the turn's messages (``said``),
    earlier in the conversation (``before``), in the results of the turn's earlier calls, or
    nowhere verbatim."""
    for source, text in zip(VALUE_SOURCES, (said, before, results)):
        if _written(value, text):
            return source
    return VALUE_SOURCES[3]


def _written(value: Any, text: str) -> bool:
    return str(value) in text or (isinstance(value, float) and value.is_integer() and str(int(value)) in text)


def traced_values(conversation: Conversation, data: BFCLData) -> Iterator[tuple[int, str, str, Any, str]]:
    """Each scalar of each gold call of ``conversation``, in order, with where the gold
    conversation, executed as it goes, writes it first: ``(turn, tool, argument, value,
    source)`` (`VALUE_SOURCES`)."""
    session = Session(conversation, data.tool_class)
    before = ""
    for turn, (messages, gold) in enumerate(zip(conversation.turns, conversation.gold)):
        said = " ".join(m.get("content") or "" for m in messages)
        results = ""
        for call in gold:
            for argument, value in call["arguments"].items():
                for leaf in leaf_values(value):
                    yield turn, call["name"], argument, leaf, value_source(leaf, said, before, results)
            results += " " + session.execute(call["name"], call["arguments"])
        before += f" {said} {json.dumps([c['arguments'] for c in gold])}{results}"


def value_sources(conversations: Sequence[Conversation], data: BFCLData) -> dict[str, int]:
    """Where each gold argument value (each scalar of each gold call) is written first, the
    gold conversation executed as it goes (`VALUE_SOURCES`): in the turn's own messages; in
    earlier turns (their messages, calls' arguments and results); in the results of the
    turn's own earlier calls, which a resumed plan does not show (`resumed_prompt_ids`
    continues the plan after its calls); or nowhere verbatim (computed, a default, an enum
    value the words imply)."""
    counts = dict.fromkeys(VALUE_SOURCES, 0)
    for conversation in conversations:
        for *_, source in traced_values(conversation, data):
            counts[source] += 1
    return counts


def value_recall(records: Sequence[dict[str, Any]], data: BFCLData) -> dict[str, dict[str, int]]:
    """Where a run loses its gold values: for each of `VALUE_SOURCES`, the gold values of
    ``records`` (`run_conversations`' records, one per conversation), how many sit in a call
    whose tool the turn's plan called, and how many the plan wrote under their argument (a
    list argument: as one of its items)."""
    counts = {source: {"values": 0, "call_planned": 0, "written": 0} for source in VALUE_SOURCES}
    conversations = {c.id: c for c in data.conversations}
    for record in records:
        turns = record["turns"]
        for turn, tool, argument, value, source in traced_values(conversations[record["id"]], data):
            calls = [c for c in turns[turn]["calls"] if c["name"] == tool]
            count = counts[source]
            count["values"] += 1
            count["call_planned"] += bool(calls)
            count["written"] += any(value in leaf_values(c["arguments"].get(argument)) for c in calls)
    return counts


def recall_total(counts: dict[str, dict[str, int]]) -> dict[str, int]:
    """`value_recall`'s counts summed over the places a value is first written."""
    return {key: sum(c[key] for c in counts.values()) for key in ("values", "call_planned", "written")}


def evaluate(
    name: str,
    backbone: Backbone,
    config: AgentRunConfig,
    data: BFCLData,
    train: list[dict],
    test: list[Conversation],
    inventory: dict[str, dict],
    traces: list[dict] | None = None,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Fits one method on the training turns (learning ``inventory``, `trained_tools`), runs
    the test conversations, scores them. TokMem learns from ``traces`` when given (the same
    turns cut where they read results: `training_turns` with ``read_results``); the text
    baselines, which write a turn's plan at once, from ``train``.

    Yields:
        ``(row, result)`` as each is done: the method's name; for TokMem, one row per lever
        setting of ``config.levers`` (``tokmem``, ``tokmem-levers-off``), all from one fit.
    """
    schemas = {n: t["parameters"] for n, t in inventory.items()}
    method = build_method(name, backbone, config.settings)
    if isinstance(method, TokMemMethod):
        fit = method.fit([{"messages": ex["messages"], "calls": ex["calls"]} for ex in traces or train], inventory)
    else:
        fit = method.fit(
            [{"query": transcript(ex["messages"], schemas), "calls": ex["calls"]} for ex in train], inventory
        )
    planned: dict[str, dict[str, Any]] = {}  # by options: rows with the same options are planned once
    for levers in config.levers if isinstance(method, TokMemMethod) else ("defaults",):
        row = name if levers == "defaults" else f"{name}-levers-off"
        options = LEVERS_OFF if levers == "off" else {}
        key = json.dumps(options, sort_keys=True, default=str)
        if key in planned:
            yield row, {**planned[key], "method": row}
            continue
        plan, resumes = planner(method, inventory, options)
        started = time.perf_counter()
        records = run_conversations(test, data, plan, resumes, config.context, inventory)
        seconds = time.perf_counter() - started
        result = result_record(row, records, seconds, fit)
        result["gold_values"] = recall_total(value_recall(records, data))
        if config.irrelevance:
            result["irrelevance"] = irrelevance(plan, list(inventory), irrelevance_requests(config.irrelevance))
        planned[key] = result
        yield row, result


def result_record(name: str, records: list[dict[str, Any]], seconds: float, fit: FitRecord) -> dict[str, Any]:
    turns = [t for r in records for t in r["turns"]]
    by_calls = {
        str(n): turn_scores([t for t in turns if len(t["gold"]) == n]) for n in sorted({len(t["gold"]) for t in turns})
    }
    tool_turns = [t for t in turns if t["gold"]]
    return {
        "method": name,
        "status": "ok",
        "scores": turn_scores(turns),
        "by_calls": by_calls,
        "state_match": sum(r["state_match"] for r in records) / len(records),
        "tool_turns_answered_in_words": sum(t["words"] for t in tool_turns) / max(len(tool_turns), 1),
        "cost": {
            "prompt_tokens_per_request": sum(t["prompt_tokens"] for t in turns) / len(turns),
            "generated_tokens_per_request": sum(t["generated_tokens"] for t in turns) / len(turns),
            "seconds_per_request": seconds / len(turns),
            "plans_per_turn": sum(t["plans"] for t in turns) / len(turns),
            "trainable_parameters": fit.trainable_parameters,
            "training_seconds": fit.seconds,
            "training_examples": fit.examples,
        },
        "fit": fit.details,
        "conversations": records,
    }


def _setup(
    config: AgentRunConfig, data: BFCLData, train: list[dict], test: list[Conversation], backbone: str
) -> dict[str, Any]:
    settings = config.settings.as_dict()
    settings.pop("progress")
    return {
        "dataset": BFCL_DATASET,
        "subset": ("executed agent, with the conversation" if config.context else "executed agent, turn alone")
        + f", TokMem decoding: {' and '.join(config.levers)}",
        "train_per_tool": config.train_per_tool,
        "limit": config.limit,
        "train_requests": len(train),
        "test_conversations": len(test),
        "test_requests": sum(len(c.turns) for c in test),
        "tools": len(data.tools),
        "backbone": backbone,
        "levers": config.levers,
        "context": config.context,
        "read_results": config.read_results,
        "max_rounds": MAX_ROUNDS,
        "settings": settings,
    }


def _report_lines(summary: dict[str, Any]) -> list[str]:
    """What the agent run adds to the report: state, words, irrelevance, plans per turn."""
    lines = [""]
    setup = summary["setup"]
    if setup.get("test_tool_turns_calling_unlearned_tools"):
        lines += [
            f"{setup['test_tool_turns_calling_unlearned_tools']} of {setup['test_tool_turns']} test tool turns call "
            f"a tool that no training turn calls ({', '.join(setup['unlearned_tools'])}): no method learns it, so "
            "those turns cannot be planned right (the ceiling rows count them out).",
            "",
        ]
    sources = setup.get("test_value_sources")
    if sources:
        total = sum(sources.values())
        shares = ", ".join(f"{where} {n} ({n / total:.0%})" for where, n in sources.items())
        lines += [
            f"Where the test turns' {total} gold argument values are written before their call: {shares}. "
            "A resumed plan does not show its turn's own results, so the values found only there are out of "
            "TokMem's reach today.",
            "",
        ]
    lines += [
        "Executed agent (per method): conversations whose final state equals the gold calls' state; tool turns "
        "answered in words (no call attempted in the turn's first plan); plans per turn; irrelevant requests "
        "answered in words; the test turns' gold argument values in a call of their tool that the method made, and "
        "written right (`python -m agentmem.eval.value_recall` splits them by where each value is first written):",
        "",
        "method | state match | tool turns answered in words | plans/turn | irrelevance answered in words | "
        "gold values: in a call of their tool / written right",
        "---|---|---|---|---|---",
    ]
    for name, r in summary["methods"].items():
        if r.get("status") != "ok":
            continue
        irrelevance = r.get("irrelevance")
        cell = f"{irrelevance['answered_in_words']:.3f} of {irrelevance['requests']}" if irrelevance else "-"
        values = r.get("gold_values")
        found = f"{values['call_planned']} / {values['written']} of {values['values']}" if values else "-"
        lines.append(
            f"{name} | {r['state_match']:.3f} | {r['tool_turns_answered_in_words']:.3f} | "
            f"{r['cost']['plans_per_turn']:.2f} | {cell} | {found}"
        )
    return lines


def run_agent(config: AgentRunConfig, *, backbone: Backbone | None = None) -> dict[str, Any]:
    """Runs the executed agent evaluation and writes ``results.json``, ``report.md``, the
    plots, and ``methods/<name>.json`` (every turn's plans)."""
    from agentmem.eval.report import markdown, plot

    data = load_bfcl()
    train_conversations, _dev, test = split_conversations(data.conversations, config.settings.seed)
    train = training_turns(train_conversations, data, config.context)
    traces = (
        training_turns(train_conversations, data, config.context, read_results=True) if config.read_results else None
    )
    if config.train_per_tool is not None:
        train = cap_per_tool(train, config.train_per_tool, config.settings.seed)
        kept = {(ex["conversation"], ex["turn"]) for ex in train}
        traces = traces and [ex for ex in traces if (ex["conversation"], ex["turn"]) in kept]
    if config.limit is not None and len(test) > config.limit:
        chosen = set(random.Random(f"limit:{config.settings.seed}").sample(range(len(test)), config.limit))
        test = [c for i, c in enumerate(test) if i in chosen]
    if backbone is None:
        from agentmem.backbone import load_backbone

        backbone = load_backbone(config.backbone)
    setup = _setup(config, data, train, test, backbone.name)
    inventory = trained_tools(data, train)  # what every method learns
    results: dict[str, Any] = {}
    for name in config.methods:
        print(f"{name}: fitting on {len(train)} turns, then running {len(test)} conversations", flush=True)
        try:
            for row, record in evaluate(name, backbone, config, data, train, test, inventory, traces):
                record.update(machine=runinfo.machine(backbone.device), date=datetime.date.today().isoformat())
                write_json(config.out / "methods" / f"{row}.json", record)  # each row as soon as it is done
                results[row] = record
        except MethodUnavailableError as exc:
            results[name] = {"method": name, "status": "unavailable", "reason": str(exc)}
    gold_turns = training_turns(test, data, config.context)  # the test turns with their gold history
    summary = {
        "command": config.command,
        "setup": {
            **setup,
            "train_requests_cut_at_references": 0,
            "train_requests_skipped_for_references": 0,
            **unlearned_turns(test, inventory),
            "test_value_sources": value_sources(test, data),
        },
        # against the learned inventory: a call of a tool no training turn calls is out of every method's reach
        "ceiling": ceiling(
            [transcript(ex["messages"], {}) for ex in gold_turns], [ex["calls"] for ex in gold_turns], inventory
        ).as_dict(),
        "methods": {n: {k: v for k, v in r.items() if k != "conversations"} for n, r in results.items()},
    }
    write_json(config.out / RESULTS_FILE, summary)
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "report.md").write_text(
        markdown(summary) + "\n".join(_report_lines(summary)) + "\n", encoding="utf-8"
    )
    plot(summary, config.out)
    return summary
