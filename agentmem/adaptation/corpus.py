"""Corpora of auxiliary tools: for the adaptation phase, and for benchmarks of new tools.

The adaptation phase (`AgentMem.adapt`) trains a LoRA on tools that a user will never learn,
so that the backbone gets better at routing to memory tokens and copying argument values in
general. Its corpus (:func:`adaptation_corpus`) joins two sources:

* **NESTFUL** subsets whose tools are disjoint from ComplexFuncBench: ``glaive``, ``sgd``
  and ``executable`` (see ``../shared/DATA.md``), loaded with `load_nestful`; tools whose
  name touches a demo tool's topic (:data:`RESERVED_TOPICS`, e.g. glaive's
  ``convert_currency``, executable's ``WeatherAPI.com_*``) are left out, with every
  request that calls one;
* **synthetic** tools and requests (:func:`synthetic_tools`, :func:`synthetic_examples`):
  tool names ``verb_object`` with 1-4 typed parameters (string, integer, number, boolean,
  string enum), requests written from phrase templates in which every string and number
  value appears verbatim (a boolean or an enum is implied by its phrase), and requests of
  2-4 calls joined by connectors (``"Then,"``, ``"Also,"``, ...);
* optionally, **agent-shaped** requests (:func:`agent_examples`, ``n_agent``): conversations
  over the same synthetic tools in which the call needs a value that the request only refers
  to ("with that reference") and the conversation said: in the system prompt, an earlier
  user turn, an earlier call's result or an earlier call's arguments, as in an agent's trace;
* optionally, **traces after results** (:func:`result_traces`, ``n_results``): a request, the
  calls made for it so far and their results, then the plan's next call or its end, as an
  agent resumes once its calls have run;
* optionally, requests that need **no tool** (:func:`no_tool_examples`: small talk, a
  capital, a word's meaning), answered in words, so that the adapted backbone learns when
  not to call (``n_no_tool``; off by default, see its ablation in BENCHMARKS.md).

Synthetic tools come from two disjoint halves of the object vocabulary: ``"adapt"`` feeds
the adaptation corpus, ``"eval"`` the benchmarks of learning new tools (forgetting), so a
benchmark never measures tools the backbone was adapted on. Everything is drawn from
``random.Random`` with string seeds: the same arguments give the same corpus on any machine.
Torch-free. Part of the product (``agentmem adapt`` builds its corpus here); the benchmarks
of `agentmem.eval` draw their new tools from it too.
"""

from __future__ import annotations

import functools
import json
import random
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentmem.adaptation.nestful import NESTFUL_SUBSETS, Dataset, data_root, load_nestful
from agentmem.adaptation.words import (
    CAPITALS,
    CITIES,
    FIRST,
    FREE_TEXT_OBJECTS,
    ITEMS,
    LABELS,
    LANGUAGES,
    LAST,
    MEANINGS,
    MESSAGES,
    OBJECTS,
    OPENERS,
    OPPOSITES,
    QUESTION_OPENERS,
    SMALL_TALK,
    STREETS,
    TASKS,
    TOPICS,
    WORDS,
)
from agentmem.chat import call_messages
from agentmem.compose import join_requests
from agentmem.tools import demo
from agentmem.tools.parsing import find_reference
from agentmem.tools.spec import ToolSpec, to_tool_spec

__all__ = [
    "ADAPTATION_SUBSETS",
    "agent_examples",
    "result_traces",
    "RESERVED_TOPICS",
    "SPLITS",
    "adaptation_corpus",
    "no_tool_examples",
    "reserved_tool_names",
    "synthetic_examples",
    "synthetic_tools",
]

#: NESTFUL subsets whose tools are disjoint from ComplexFuncBench's.
ADAPTATION_SUBSETS: tuple[str, ...] = ("glaive", "sgd", "executable")
#: Topics of the demo tools: an adaptation tool whose name contains one is left out.
RESERVED_TOPICS: tuple[str, ...] = ("weather", "currency", "exchange", "email", "reminder")
SPLITS: tuple[str, ...] = ("adapt", "eval")


@dataclass(frozen=True)
class _Param:
    """A parameter kind: its JSON Schema, how to draw a value, how a request says it."""

    schema: dict[str, Any]
    draw: Callable[[random.Random], Any]
    phrases: tuple[str, ...]  # "{v}" is the value; booleans use "yes|no" pairs instead


def _pick(pool: Sequence[Any]) -> Callable[[random.Random], Any]:
    return lambda rng: rng.choice(pool)


def _name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def _title(rng: random.Random) -> str:
    first, second = rng.sample(WORDS, 2)
    return f"{first.capitalize()} {second}"


def _code(rng: random.Random) -> str:
    letters = "".join(rng.choice(string.ascii_uppercase) for _ in range(2))
    return f"{letters}-{rng.randint(100, 9999)}"


def _date(rng: random.Random) -> str:
    return f"20{rng.randint(24, 27)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _time(rng: random.Random) -> str:
    return f"{rng.randint(6, 22):02d}:{rng.choice(['00', '15', '30', '45', '05', '50'])}"


def _money(rng: random.Random) -> float:
    return round(rng.randint(5, 2000) + rng.choice([0.25, 0.5, 0.75, 0.99, 0.49]), 2)


def _string(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def _integer(description: str, low: int, high: int) -> dict[str, Any]:
    return {"type": "integer", "description": description, "minimum": low, "maximum": high}


# Every parameter a synthetic tool may take. Phrases are how a request says the value.
_PARAMS: dict[str, _Param] = {
    "city": _Param(_string("City name."), _pick(CITIES), ("in {v}", "for {v}")),
    "origin": _Param(_string("City of departure."), _pick(CITIES), ("from {v}", "leaving {v}")),
    "destination": _Param(_string("City of arrival."), _pick(CITIES), ("to {v}", "going to {v}")),
    "person": _Param(_string("Full name of the person."), _name, ("for {v}", "on behalf of {v}")),
    "recipient": _Param(_string("Full name of the recipient."), _name, ("to {v}", "addressed to {v}")),
    "title": _Param(_string("Title."), _title, ('titled "{v}"', 'called "{v}"', 'named "{v}"')),
    "date": _Param(_string("Date as YYYY-MM-DD.", pattern=r"^\d{4}-\d{2}-\d{2}$"), _date, ("on {v}", "for {v}")),
    "time": _Param(_string("24-hour time HH:MM.", pattern=r"^\d{2}:\d{2}$"), _time, ("at {v}", "around {v}")),
    "reference": _Param(_string("Reference code, e.g. 'QX-4821'."), _code, ("with reference {v}", "number {v}", "{v}")),
    "topic": _Param(_string("What to look for."), _pick(TOPICS), ('about "{v}"', "on {v}", 'matching "{v}"')),
    "address": _Param(
        _string("Street address."), lambda r: f"{r.randint(1, 200)} {r.choice(STREETS)}", ("at {v}", "to {v}")
    ),
    "language": _Param(_string("Language name."), _pick(LANGUAGES), ("in {v}",)),
    "quantity": _Param(
        _integer("How many.", 1, 50), lambda r: r.randint(1, 50), ("x{v}", "{v} of them", "quantity {v}")
    ),
    "guests": _Param(
        _integer("Number of people.", 1, 20), lambda r: r.randint(1, 20), ("for {v} people", "for a party of {v}")
    ),
    "nights": _Param(_integer("Number of nights.", 1, 30), lambda r: r.randint(1, 30), ("for {v} nights",)),
    "limit": _Param(
        _integer("Maximum number of results.", 1, 100), lambda r: r.randint(2, 100), ("top {v}", "limit {v} results")
    ),
    "year": _Param(_integer("Year.", 1950, 2030), lambda r: r.randint(1950, 2030), ("from {v}", "in the year {v}")),
    "minutes": _Param(
        _integer("Duration in minutes.", 1, 600),
        lambda r: r.randint(5, 600),
        ("for {v} minutes", "lasting {v} minutes"),
    ),
    "min_rating": _Param(
        _integer("Lowest acceptable rating (1-5).", 1, 5),
        lambda r: r.randint(1, 5),
        ("rated at least {v}", "with {v} stars or more"),
    ),
    "max_price": _Param(
        {"type": "number", "description": "Highest price in dollars."},
        _money,
        ("under ${v}", "for at most {v} dollars"),
    ),
    "amount": _Param({"type": "number", "description": "Amount in dollars."}, _money, ("of ${v}", "for {v} dollars")),
    "weight_kg": _Param(
        {"type": "number", "description": "Weight in kilograms."},
        lambda r: round(r.uniform(0.2, 40) + 0.05, 2),
        ("weighing {v} kg",),
    ),
    "express": _Param(
        {"type": "boolean", "description": "Fastest option."},
        lambda r: r.random() < 0.5,
        ("with express handling|with standard handling",),
    ),
    "public": _Param(
        {"type": "boolean", "description": "Visible to everyone."},
        lambda r: r.random() < 0.5,
        ("publicly|privately", "as public|as private"),
    ),
    "priority": _Param(
        _string("Priority.", enum=["low", "normal", "high", "urgent"]),
        _pick(["low", "normal", "high", "urgent"]),
        ("with {v} priority", "marked {v}"),
    ),
    "sort_by": _Param(
        _string("Sort order.", enum=["price", "rating", "distance", "date"]),
        _pick(["price", "rating", "distance", "date"]),
        ("sorted by {v}", "ordered by {v}"),
    ),
    "size": _Param(
        _string("Size.", enum=["small", "medium", "large"]),
        _pick(["small", "medium", "large"]),
        ("in size {v}", "{v} size"),
    ),
    "format": _Param(
        _string("File format.", enum=["pdf", "csv", "json", "txt"]),
        _pick(["pdf", "csv", "json", "txt"]),
        ("as {v}", "in {v} format"),
    ),
    "mode": _Param(
        _string("Travel mode.", enum=["driving", "walking", "cycling", "transit"]),
        _pick(["driving", "walking", "cycling", "transit"]),
        ("by {v}", "{v}"),
    ),
}


_FREE_TEXT: dict[str, _Param] = {
    "task": _Param(
        _string("What to do, in the request's words."), _pick(TASKS), ("to {v}", "so that I {v}", "saying {v}")
    ),
    "message": _Param(
        _string("The message text, in the request's words."),
        _pick(MESSAGES),
        ('saying "{v}"', "that says {v}", "with the text {v}"),
    ),
    "item": _Param(_string("The item, as the request names it."), _pick(ITEMS), ("for {v}", "of {v}")),
    "label": _Param(_string("A short label."), _pick(LABELS), ('labelled "{v}"', "named {v}", "for {v}")),
}
_PARAMS.update(_FREE_TEXT)
# A share of adaptation tools get a random name and description, so that the memory token,
# not the tool's name, has to carry which tool it is (as TokMem's corpus does).
_MASKED_SHARE = 0.25


@dataclass(frozen=True)
class _Tool:
    name: str
    verb: str
    noun: str
    params: tuple[str, ...]
    required: int  # the first `required` params are required
    description: str = ""  # default: "<Verb> <noun>."

    def schema(self) -> dict[str, Any]:
        properties = {p: dict(_PARAMS[p].schema) for p in self.params}
        return {
            "name": self.name,
            "description": self.description or f"{self.verb.replace('_', ' ').capitalize()} {self.noun}.",
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": list(self.params[: self.required]),
                "additionalProperties": False,
            },
        }


def _objects(split: str) -> list[tuple[str, str, tuple[str, ...], tuple[str, ...]]]:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    objects = OBJECTS[SPLITS.index(split) :: len(SPLITS)]
    return objects + FREE_TEXT_OBJECTS if split == "adapt" else objects


def _tools(n: int, seed: int, split: str) -> list[_Tool]:
    objects = _objects(split)
    candidates = [(verb, obj) for obj in objects for verb in obj[2]]
    if not 1 <= n <= len(candidates):
        raise ValueError(f"split {split!r} has {len(candidates)} synthetic tools; asked for n={n}")
    random.Random(f"tools:{split}:{seed}").shuffle(candidates)
    tools = []
    for verb, (slug, noun, _, params) in candidates[:n]:
        # A tool's own seed: its parameters do not depend on how many tools were drawn.
        rng = random.Random(f"tool:{split}:{seed}:{verb}_{slug}")
        chosen = rng.sample(params, rng.randint(1, min(4, len(params))))
        name, description = f"{verb}_{slug}", ""
        if split == "adapt" and rng.random() < _MASKED_SHARE:
            name = "tool_" + "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(6))
            description = " ".join(
                "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 8))) for _ in range(4)
            )
        tools.append(
            _Tool(name, verb, noun, tuple(chosen), required=rng.randint(1, len(chosen)), description=description)
        )
    return tools


def synthetic_tools(n: int = 50, seed: int = 0, split: str = "adapt") -> dict[str, dict]:
    """Synthetic tool definitions (OpenAI-style inner function dicts), by name.

    Args:
        n: How many tools (``"adapt"`` offers 76, ``"eval"`` 60).
        seed: Seeds which tools and parameters are drawn.
        split: ``"adapt"`` (adaptation corpus) or ``"eval"`` (benchmarks); their objects,
            hence their tool names, never overlap.

    Raises:
        ValueError: Unknown split, or more tools than the split has.
    """
    return {t.name: t.schema() for t in _tools(n, seed, split)}


def _clause(
    tool: _Tool, rng: random.Random, given: Mapping[str, Any] | None = None, unsaid: Mapping[str, str] | None = None
) -> tuple[str, dict[str, Any]]:
    """One request for one call, lower-case and without end punctuation, and its arguments.

    ``given`` values are used (drawn otherwise); ``unsaid`` maps a parameter to the words that
    refer to its value instead of saying it (``"with that reference"``)."""
    given, unsaid = given or {}, unsaid or {}
    optional = [p for p in tool.params[tool.required :] if rng.random() < 0.6 or p in given]
    used = list(tool.params[: tool.required]) + optional
    arguments = {p: given[p] if p in given else _PARAMS[p].draw(rng) for p in tool.params if p in used}
    phrases = []
    for p in used:
        if p in unsaid:
            phrases.append(unsaid[p])
            continue
        phrase = rng.choice(_PARAMS[p].phrases)
        if "|" in phrase:  # boolean: the phrase for true, then the one for false
            phrase = phrase.split("|")[0 if arguments[p] else 1]
        phrases.append(phrase.replace("{v}", str(arguments[p])))
    rng.shuffle(phrases)
    return " ".join([tool.verb.replace("_", " "), tool.noun, *phrases]), arguments


def _sentence(clause: str, rng: random.Random) -> str:
    opener = rng.choice(OPENERS)
    text = opener + clause + ("?" if opener in QUESTION_OPENERS else rng.choice([".", "", " please."]))
    return text[0].upper() + text[1:]


def _single(tool: _Tool, rng: random.Random) -> dict[str, Any]:
    clause, arguments = _clause(tool, rng)
    return {"query": _sentence(clause, rng), "calls": [{"name": tool.name, "arguments": arguments}]}


def _multi(tools: Sequence[_Tool], rng: random.Random) -> dict[str, Any]:
    parts = [_single(tool, rng) for tool in rng.sample(list(tools), rng.randint(2, min(4, len(tools))))]
    query = join_requests([(p["query"], list(p["calls"][0]["arguments"].values())) for p in parts], rng)
    return {"query": query, "calls": [p["calls"][0] for p in parts]}


def synthetic_examples(
    tools: int | Sequence[str] = 50,
    n: int = 1000,
    seed: int = 0,
    split: str = "adapt",
    multi: float = 0.5,
    sample_seed: int | None = None,
) -> list[dict]:
    """Synthetic requests ``{"query", "calls": [{"name", "arguments"}, ...]}``.

    Args:
        tools: How many synthetic tools to draw from (as :func:`synthetic_tools` with the
            same ``seed`` and ``split``), or the names of some of them.
        n: How many requests, all with distinct queries.
        seed: Seeds the tools, as in :func:`synthetic_tools`.
        split: ``"adapt"`` or ``"eval"``.
        multi: Share of requests with 2-4 calls (the rest have one).
        sample_seed: Seeds the draw of requests (default: ``seed``); another value gives
            other requests for the same tools (e.g. a test set).

    Raises:
        ValueError: Unknown split or tool names, or bad counts.
    """
    pool = _tools(tools if isinstance(tools, int) else len(_objects(split)) * 2, seed, split)
    if not isinstance(tools, int):
        by_name = {t.name: t for t in pool}
        unknown = [name for name in tools if name not in by_name]
        if unknown:
            raise ValueError(f"not synthetic tools of split {split!r}: {unknown}")
        pool = [by_name[name] for name in tools]
    if multi > 0 and len(pool) < 2:
        raise ValueError(f"multi-call requests need at least 2 tools, got {len(pool)}")
    draw = seed if sample_seed is None else sample_seed
    rng = random.Random(f"examples:{split}:{seed}:{draw}:{','.join(t.name for t in pool)}")
    examples: dict[str, dict] = {}
    for _ in range(20 * n + 100):
        if len(examples) == n:
            break
        example = _multi(pool, rng) if rng.random() < multi else _single(rng.choice(pool), rng)
        examples.setdefault(example["query"], example)
    if len(examples) < n:
        raise ValueError(f"cannot draw {n} distinct requests from {len(pool)} tools")
    return list(examples.values())


# Agent-shaped requests: the call needs a value that the request does not say but the
# conversation did, as in an agent's trace (BFCL's multi-turn sets: ids, names and results
# from earlier turns and the session). Where the value was said:
#   "system": the system prompt, among other details on file;
#   "turn":   an earlier user message, that the assistant acknowledged;
#   "result": the result of an earlier call (of another tool), among its other fields;
#   "call":   an earlier request and its call, of another tool taking the same parameter.
_CONTEXTS: tuple[str, ...] = ("system", "turn", "result", "call")
# How the request refers to the value instead of saying it ("{label}": the parameter's name).
_REFERRING: dict[str, tuple[str, ...]] = {
    "system": ("with my {label}", "using the {label} on file", "for my saved {label}"),
    "turn": ("with that {label}", "using the {label} I gave you", "with the {label} I mentioned"),
    "result": ("with the {label} from that result", "using the returned {label}", "with that {label}"),
    "call": ("with the same {label}", "using the same {label} as before", "with that {label} again"),
}
_SAID: tuple[str, ...] = ("My {label} is {v}.", "Note that the {label} is {v}.", "For later: the {label} is {v}.")
_ACKNOWLEDGED: tuple[str, ...] = ("Noted.", "Got it.", "Okay, I will keep that in mind.")
_LABELS = {"origin": "departure city", "person": "name", "min_rating": "minimum rating", "max_price": "price limit"}


def _label(param: str) -> str:
    return _LABELS.get(param, param.replace("_kg", "").replace("_", " "))


def _carried(param: str) -> bool:
    """Whether a value of this parameter can come from the conversation: a copied string or
    number, not a boolean or an enum value that the request's own words imply."""
    schema = _PARAMS[param].schema
    return schema["type"] in ("string", "integer", "number") and "enum" not in schema


def _from_context(tools: Sequence[_Tool], rng: random.Random) -> dict[str, Any] | None:
    """One agent-shaped request ``{"messages", "calls"}`` (see :data:`_CONTEXTS`); None when
    the request happens to say the value anyway (a second call's 6 nights, a date's 10)."""
    tool = rng.choice([t for t in tools if any(_carried(p) for p in t.params)])
    param = rng.choice([p for p in tool.params if _carried(p)])
    where = rng.choice(_CONTEXTS)
    sources = [t for t in tools if t is not tool and (where != "call" or param in t.params)]
    if not sources:  # no other tool takes this parameter: the value comes from a result
        where, sources = "result", [t for t in tools if t is not tool]
    value = _PARAMS[param].draw(rng)
    label = _label(param)
    clause, arguments = _clause(
        tool, rng, given={param: value}, unsaid={param: rng.choice(_REFERRING[where]).format(label=label)}
    )
    calls = [{"name": tool.name, "arguments": arguments}]
    request = _sentence(clause, rng)
    if rng.random() < 0.3:  # and a second call whose values the request says
        other = _single(rng.choice(sources), rng)
        request = join_requests(
            [(request, list(arguments.values())), (other["query"], other["calls"][0]["arguments"].values())], rng
        )
        calls.append(other["calls"][0])
    if str(value) in request:
        return None
    if where == "system":
        details = {p: _PARAMS[p].draw(rng) for p in rng.sample(sorted(_PARAMS), 2) if _carried(p) and p != param}
        details[param] = value
        facts = "; ".join(f"{_label(p)}: {v}" for p, v in sorted(details.items(), key=lambda _: rng.random()))
        earlier = [
            {"role": "system", "content": f"You are a helpful assistant. Details on file for this user: {facts}."}
        ]
    elif where == "turn":
        said = rng.choice(_SAID).format(label=label, v=value)
        earlier = [{"role": "user", "content": said}, {"role": "assistant", "content": rng.choice(_ACKNOWLEDGED)}]
    else:
        source = rng.choice(sources)
        first, first_arguments = _clause(source, rng, given={param: value} if where == "call" else None)
        result: dict[str, Any] = {"status": "ok"}
        if where == "result":  # the value among the call's own fields
            result.update({p: v for p, v in first_arguments.items() if p != param and not isinstance(v, bool)})
            result[param] = value
        earlier = [
            {"role": "user", "content": _sentence(first, rng)},
            *call_messages(
                [{"name": source.name, "arguments": first_arguments}],
                [json.dumps(result, ensure_ascii=False)],
                ["call_0"],
            ),
        ]
    return {"messages": [*earlier, {"role": "user", "content": request}], "calls": calls}


def _conversations(
    n: int,
    seed: int,
    tools: int,
    kind: str,
    draw: Callable[[Sequence[_Tool], random.Random], dict[str, Any] | None],
    what: str,
) -> list[dict]:
    """``n`` distinct conversation examples ``{"messages", "calls"}`` from ``draw`` (None: a
    draw that failed) over the ``"adapt"`` split's first ``tools`` synthetic tools, seeded
    by ``kind`` and ``seed``."""
    pool = _tools(tools, seed, "adapt")
    rng = random.Random(f"{kind}:{seed}:{tools}")
    examples: dict[str, dict] = {}
    for _ in range(20 * n + 100):
        if len(examples) == n:
            break
        example = draw(pool, rng)
        if example is not None:
            examples.setdefault(json.dumps(example["messages"]), example)
    if len(examples) < n:
        raise ValueError(f"cannot draw {n} distinct {what} from {len(pool)} tools")
    return list(examples.values())


def agent_examples(n: int, seed: int = 0, tools: int = 76) -> list[dict]:
    """``n`` agent-shaped requests ``{"messages", "calls"}`` over the ``"adapt"`` split's
    synthetic tools: the first call needs a value that only the conversation says (in the
    system prompt, an earlier user turn, an earlier call's result or an earlier call's
    arguments), referred to in the request ("with that reference"); a share of them add a
    second call whose values the request says. Distinct requests, drawn with ``seed``.

    Raises:
        ValueError: More tools than the split has.
    """
    return _conversations(n, seed, tools, "agent", _from_context, "agent-shaped requests")


# Traces that go on after their results, as an agent resumes (`resumed_prompt_ids` with
# read_results): the request, the calls made for it so far and their results; then what
# follows them: the rest of the plan, or nothing (the request is done). Most are done: the
# decision a resumed plan gets wrong is to go on, with a call it made for an earlier turn,
# so a share begin with an earlier turn whose call and result stay in the conversation.
_DONE_SHARE = 0.7
_EARLIER_SHARE = 0.6


def _result(arguments: Mapping[str, Any], rng: random.Random, **fields: Any) -> str:
    """What a synthetic tool returns: "ok", some of the values it was called with, ``fields``."""
    echoed = {p: v for p, v in arguments.items() if not isinstance(v, bool) and rng.random() < 0.5}
    return json.dumps({"status": "ok", **echoed, **fields}, ensure_ascii=False)


def _after_results(tools: Sequence[_Tool], rng: random.Random) -> dict[str, Any] | None:
    """One trace ``{"messages", "calls"}`` that ends in the results of the request's calls so
    far (see above); None when the request happens to say a value it should not. Not done:
    the next call has a value that only the last result says ("using the returned
    reference"), or the request's next calls, whose values it says."""
    earlier: list[dict[str, Any]] = []
    if rng.random() < _EARLIER_SHARE:
        first = _single(rng.choice(tools), rng)
        call = first["calls"][0]
        earlier = [
            {"role": "user", "content": first["query"]},
            *call_messages([call], [_result(call["arguments"], rng)], ["call_0_0"]),
        ]
    returned: dict[str, Any] = {}  # a value the last result says for the next call
    if rng.random() < _DONE_SHARE:
        request = _multi(tools, rng) if rng.random() < 0.5 else _single(rng.choice(tools), rng)
        query, made, rest = request["query"], request["calls"], []
    elif rng.random() < 0.5:  # the next call reads the last result
        tool = rng.choice([t for t in tools if any(_carried(p) for p in t.params)])
        param = rng.choice([p for p in tool.params if _carried(p)])
        returned = {param: _PARAMS[param].draw(rng)}
        unsaid = {param: rng.choice(_REFERRING["result"]).format(label=_label(param))}
        then, arguments = _clause(tool, rng, given=returned, unsaid=unsaid)
        source = _single(rng.choice([t for t in tools if t is not tool]), rng)
        made, rest = source["calls"], [{"name": tool.name, "arguments": arguments}]
        parts = [(source["query"], made[0]["arguments"].values()), (_sentence(then, rng), arguments.values())]
        query = join_requests(parts, rng)
    else:  # the request's next calls
        request = _multi(tools, rng)
        cut = rng.randint(1, len(request["calls"]) - 1)
        query, made, rest = request["query"], request["calls"][:cut], request["calls"][cut:]
    results = [_result(c["arguments"], rng) for c in made[:-1]]
    results.append(_result(made[-1]["arguments"], rng, **returned))
    if any(str(v) in query for v in returned.values()):
        return None  # the request says the value anyway (a second call's 6 nights)
    turn = 1 if earlier else 0
    ids = [f"call_{turn}_{k}" for k in range(len(made))]
    messages = [*earlier, {"role": "user", "content": query}, *call_messages(made, results, ids)]
    return {"messages": messages, "calls": rest}


def result_traces(n: int, seed: int = 0, tools: int = 76) -> list[dict]:
    """``n`` traces ``{"messages", "calls"}`` over the ``"adapt"`` split's synthetic tools that
    end in the results of the request's calls so far, as an agent resumes: 70% are done (no
    calls), the others go on with the request's next calls, or with a call whose value only
    the last result says; 60% begin with an earlier turn's call and its result. Distinct,
    drawn with ``seed``.

    Raises:
        ValueError: More tools than the split has.
    """
    return _conversations(n, seed, tools, "results", _after_results, "traces after results")


def _no_tool(rng: random.Random) -> dict[str, Any]:
    """A request that needs no tool, ``{"query", "calls": [], "answer"}``."""
    kind = rng.randrange(4)
    if kind == 0:
        queries, answers = rng.choice(SMALL_TALK)
        return {"query": rng.choice(queries), "calls": [], "answer": rng.choice(answers)}
    if kind == 1:
        country = rng.choice(list(CAPITALS))
        query = rng.choice(
            ["What is the capital of {c}?", "What's the capital city of {c}?", "Which city is {c}'s capital?"]
        )
        return {
            "query": query.format(c=country),
            "calls": [],
            "answer": f"The capital of {country} is {CAPITALS[country]}.",
        }
    if kind == 2:
        word = rng.choice(list(MEANINGS))
        query = rng.choice(["What does '{w}' mean?", "Define {w}.", "What is the meaning of the word {w}?"])
        return {"query": query.format(w=word), "calls": [], "answer": f"'{word.capitalize()}' means {MEANINGS[word]}."}
    word = rng.choice(list(OPPOSITES))
    query = rng.choice(["What is the opposite of {w}?", "Give me the antonym of '{w}'.", "What's the opposite of {w}?"])
    return {"query": query.format(w=word), "calls": [], "answer": f"The opposite of '{word}' is '{OPPOSITES[word]}'."}


def no_tool_examples(n: int, seed: int = 0) -> list[dict]:
    """``n`` requests that need no tool, ``{"query", "calls": [], "answer"}`` (repeats
    allowed: the pool holds fewer than 100 distinct queries)."""
    rng = random.Random(f"no-tool:{seed}")
    return [_no_tool(rng) for _ in range(n)]


@functools.lru_cache(maxsize=1)
def _complexfuncbench_names() -> frozenset[str]:
    # The spec file alone (no requests): the data file is ten times larger.
    with open(data_root() / NESTFUL_SUBSETS["complexfuncbench"][1], encoding="utf-8") as f:
        return frozenset(spec["name"] for spec in json.load(f))


def reserved_tool_names() -> frozenset[str]:
    """Tools an adaptation corpus must not contain: the demo pack's and ComplexFuncBench's."""
    return frozenset(demo.TOOLS) | _complexfuncbench_names()


def _valid(call: dict, specs: dict[str, ToolSpec]) -> bool:
    # `load_nestful` has checked the arguments against their ToolSpec already. A call that
    # passes an earlier result ("$var1.gross_salary$") is left out with its request: a plan
    # holds literal values only, and a reference taught here would come out of the adapted
    # backbone as a value no executor resolves.
    return call["name"] in specs and find_reference(call["arguments"]) is None


def _allowed(name: str, reserved: frozenset[str]) -> bool:
    return name not in reserved and not any(topic in name.lower() for topic in RESERVED_TOPICS)


def adaptation_corpus(
    n_synthetic: int = 5000,
    seed: int = 0,
    synthetic_tool_count: int = 76,
    subsets: Sequence[str] = ADAPTATION_SUBSETS,
    n_no_tool: int = 0,
    n_agent: int = 0,
    n_results: int = 0,
) -> Dataset:
    """The corpus of the adaptation phase: NESTFUL requests plus synthetic ones.

    Args:
        n_synthetic: Synthetic requests (half of them with 2-4 calls).
        n_no_tool: Requests that need no tool, answered in words (:func:`no_tool_examples`).
            Off by default: 250 of them taught the adapted backbone to answer such requests
            in words (15-18 of 20 held-out ones, against 6) but cost 4-6 points of tool F1
            on the demo pack's tool requests (BENCHMARKS.md, fourth pass).
        n_agent: Agent-shaped requests (:func:`agent_examples`, over the same synthetic
            tools): a value comes from the conversation, not the request.
        n_results: Traces that end in the results of their calls so far (:func:`result_traces`,
            over the same synthetic tools): what follows is the plan's next call or its end.
        seed: Seeds the synthetic tools and requests, and the final shuffle.
        synthetic_tool_count: Synthetic tools to draw (split ``"adapt"``).
        subsets: NESTFUL subsets to include (each must be disjoint from ComplexFuncBench).

    Returns:
        A `Dataset` whose tools are disjoint from :func:`reserved_tool_names` and touch no
        :data:`RESERVED_TOPICS`; its examples are shuffled with ``seed``.

    Raises:
        ValueError: A subset that is not one of :data:`ADAPTATION_SUBSETS`.
    """
    bad = [s for s in subsets if s not in ADAPTATION_SUBSETS]
    if bad:
        raise ValueError(f"subsets {bad} are not adaptation subsets; allowed: {', '.join(ADAPTATION_SUBSETS)}")
    reserved = reserved_tool_names()
    tools: dict[str, dict] = {}
    examples: list[dict] = []
    for subset in subsets:
        data = load_nestful(subset)
        kept = {name: to_tool_spec(tool) for name, tool in data.tools.items() if _allowed(name, reserved)}
        examples += [e for e in data.examples if all(_valid(c, kept) for c in e["calls"])]
        tools.update({name: data.tools[name] for name in kept})
    if n_synthetic > 0 or n_agent > 0 or n_results > 0:
        tools.update(synthetic_tools(synthetic_tool_count, seed, "adapt"))
    if n_synthetic > 0:
        examples += synthetic_examples(synthetic_tool_count, n_synthetic, seed, "adapt")
    examples += no_tool_examples(n_no_tool, seed)
    if n_agent > 0:
        examples += agent_examples(n_agent, seed, synthetic_tool_count)
    if n_results > 0:
        examples += result_traces(n_results, seed, synthetic_tool_count)
    # the tools of every call, earlier calls in a conversation's messages included
    earlier = [c for e in examples for m in e.get("messages", ()) for c in m.get("tool_calls") or ()]
    used = {c["name"] for e in examples for c in e["calls"]} | {c["function"]["name"] for c in earlier}
    random.Random(f"corpus:{seed}").shuffle(examples)
    sizes = f"synthetic={n_synthetic}, no_tool={n_no_tool}" + (f", agent={n_agent}" if n_agent else "")
    sizes += f", results={n_results}" if n_results else ""
    name = f"adaptation(seed={seed}, {sizes}, subsets={'+'.join(subsets)})"
    return Dataset(name=name, tools={n: t for n, t in tools.items() if n in used}, examples=examples)
