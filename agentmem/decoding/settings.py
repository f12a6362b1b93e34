"""The settings of one planning call: the one source of every decoding option and its presets.

`DecodeSettings` is the decoder's `SamplingParams`: one field per option, each with its
default and, in ``metadata["help"]``, the words that `AgentMem.plan`'s docstring, `agentmem
plan`'s flags and the decoding bench show for it. A field marked ``metadata["lever"]`` is a
decoding lever (a step the decoder may take or leave, measured alone in `eval/bench_decoding`);
`PRESETS` names whole settings: the library's defaults, and plain greedy decoding (what an
exported model does, `agentmem.export`).
"""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

ToolChoice = str  # one of POLICIES ("auto" | "any" | "none") or a tool name; see agentmem.chat.tool_choice_policy


def _option(default: Any, help: str, lever: bool = False) -> Any:
    return field(default=default, metadata={"help": help, "lever": lever})


@dataclass
class DecodeSettings:
    """Limits and policy of one planning call (each field's ``metadata["help"]`` says what it does)."""

    tool_choice: ToolChoice = _option(
        "auto",
        '"auto" (calls or a text answer), "any"/"required" (at least one call), "none" (text '
        "only), or a tool name (that tool first); LangChain's other forms too "
        "(`agentmem.chat.tool_choice_policy`).",
    )
    tools: Sequence[str] | None = _option(None, "Restrict routing to these learned tools (None: all of them).")
    max_calls: int = _option(8, "Stop after this many calls.")
    max_argument_tokens: int = _option(128, "Most tokens of one call's arguments (a longer call is invalid).")
    max_text_tokens: int = _option(256, "Most tokens of a text answer.")
    constrained: bool = _option(True, "Decode arguments under each tool's JSON Schema.")
    # Speed options: the plan is the one decoded token by token; only the forward passes
    # change (`agentmem.decoding.drafts`; measured in BENCHMARKS.md, "Drafts").
    jump_forward: bool = _option(
        True,
        "Feed the tokens the tool's grammar forces (a key's rest, punctuation, closing braces) "
        "in one forward pass with the token before them, each checked as if decoded alone: the "
        "same plan in fewer passes.",
    )
    # On (2026-12-07): with jump_forward, fewer passes and less time than jump_forward alone
    # on every set measured, plans the same: BFCL dev turns one at a time 0.70x of no drafts'
    # time against 0.81x (turn alone 0.62x against 0.76x), plan_batch 0.86x against 0.91x;
    # demo pack 0.64x against 0.76x (BENCHMARKS.md, "Drafts").
    copy_drafts: bool = _option(
        True,
        "Inside a value that continues a span of the request, feed the request's next tokens "
        "in one forward pass, each checked as if decoded alone: the same plan in fewer passes.",
    )
    # Each lever's default is decided on real data (BENCHMARKS.md, "Decoding levers on real
    # data"): on only where, alone against every lever off, it is at least neutral on BFCL's
    # dev conversations and ComplexFuncBench's dev part and helps on one.
    # On at 3 (2026-12-07), copying from a conversation's last user message only: over the
    # other defaults, ComplexFuncBench dev argument F1 +7.1 points [+3.5, +11.0] (two learn
    # seeds); BFCL dev with the conversation and its report part unchanged, turn alone within
    # noise; demo pack argument F1 +14 / +3 (draws 1 / 2). From every span of the whole
    # conversation it cost BFCL 3.4 points of argument F1 (BENCHMARKS.md, "copy_bias from the
    # last user message, on by default").
    copy_bias: float = _option(
        3.0,
        "Bonus to the scores of tokens that continue a span (or a number) of the request (of a "
        "conversation, its last user message) inside a value (copy-aware decoding); 0 turns it off.",
        lever=True,
    )
    # Off: alone, no change on BFCL turn alone nor ComplexFuncBench dev (it helps nowhere).
    drop_unfounded: bool = _option(
        False,
        "Leave out an optional string or number argument whose value is not in the request, or "
        "repeats another argument's (the tool's default then applies; the plan's notes say what "
        "was left out).",
        lever=True,
    )
    # Off: alone, tool F1 0.423 -> 0.357 on BFCL turn alone, 0.478 -> 0.433 on
    # ComplexFuncBench dev (on the demo pack, +11 / +17: its values are all in the request).
    reroute_unfounded: bool = _option(
        False,
        "When a call holds a value the request does not (or breaks its schema), decode the next "
        "likeliest tools at that routing decision too and keep the best-founded call (the plan's "
        "notes say when the tool changed).",
        lever=True,
    )
    # The model leaves out optional arguments the request gives ("Alert me on Tuesday at ..."
    # without its date); 2 on the demo pack: argument F1 +6.2 / +6.7 points. Off: over the
    # defaults, BFCL dev unchanged (both modes); on ComplexFuncBench dev tool F1 0.478 ->
    # 0.514 with argument F1 unchanged, and in the plans read the gain is calls after the
    # first with invented ids (Search_Attractions(id="eyi_2_1_2024")): no executor resolves them.
    optional_bias: float = _option(
        0.0,
        "Bonus to writing one more argument while an optional property is unwritten (0: off); "
        "with drop_unfounded, what the request does not hold, or what repeats another argument, "
        "is left out again.",
        lever=True,
    )
    # A small model often ends a two-part request after its first part ("... Also remind me
    # to pack an umbrella at 07:30" with the weather call alone). Off: alone, no change on
    # BFCL turn alone; not yet shown to help on real data.
    complete_plan: bool = _option(
        False,
        "Before the plan ends, decode the likeliest next tool's call too, and keep it when all its "
        "values are in the request and one is used by no earlier call (the plan's notes say when "
        "a call was added).",
        lever=True,
    )
    # Words or a call from the routing evidence, never from what a call's arguments hold
    # (on multi-turn data most values come from earlier turns, not the request). Off: on the
    # route_from_last_turn rows, BFCL dev at share 0.7 is neutral on the F1s and trades one
    # more irrelevant request answered in words for 1-2 more tool turns in words (share 0.5:
    # turn alone tool F1 -1.1); on the report part it answers fewer irrelevant requests in words.
    fall_back_to_text: bool = _option(
        False,
        'With tool_choice="auto": at the plan\'s start, answer in words when the text route (every '
        "token but the memory tokens) holds at least a set share of the routing probability "
        "against the tools together (`FallBackToText.share`), else call the likeliest tool; off, "
        "the likeliest single token decides. A call is never turned into words for a value the "
        "request does not state.",
        lever=True,
    )
    # With the conversation in front, rows learned from conversations route a turn's first
    # call to the tools the conversation already called; the last user message alone routes
    # it better. On: over the other defaults, BFCL dev with the conversation 0.458 / 0.214 /
    # 0.109 -> 0.713 / 0.292 / 0.152 (tool F1 / argument F1 / exact); single-message requests
    # (BFCL turn alone, ComplexFuncBench, the demo pack, irrelevance) plan exactly as without
    # it. Alone, before unique_enum_items, it lost 0.6 points of argument F1 to lockDoors
    # runaways (BENCHMARKS.md, "route_by_last_turn on by default").
    route_by_last_turn: bool = _option(
        True,
        "With a conversation (earlier turns before the last user message), the plan's first "
        "call goes to the tool its last user message alone routes to (one more forward pass "
        "over that message); the conversation still decides words or a call, and writes the "
        "arguments.",
        lever=True,
    )

    # A small model that has not learned a list of enum values repeats one of them until
    # the runaway guard ends the plan (BFCL's lockDoors: ["driver","passenger","passenger",
    # ...]). On: alone, BFCL dev turn alone 0.582 / 0.230 / 0.109 -> 0.655 / 0.289 / 0.130
    # (tool F1 / argument F1 / exact), with the conversation unchanged; ComplexFuncBench and
    # the demo pack have no array of enum strings, so it changes nothing there.
    unique_enum_items: bool = _option(
        True,
        "In an array argument of enum strings, never write a value twice (once every value is "
        "in, the array closes); JSON Schema's grammar has no uniqueItems to say it.",
        lever=True,
    )
    # A copied word's token carries the space before it in the request (" Crescent" of "to
    # Crescent Hollow"), so a value copied from its first word starts with a space no executor
    # expects (BFCL dev: set_navigation(" Crescent Hollow, Spring, TX")). No gold string value
    # of BFCL's development domains nor of the NESTFUL sets (13,640 values) starts with one.
    # Masking those tokens instead made the model write another value ("cerealland"). On: over
    # the other defaults, BFCL dev with the conversation 0.713 / 0.292 / 0.152 -> 0.713 /
    # 0.314 / 0.174 (tool F1 / argument F1 / exact: that one turn); BFCL turn alone,
    # ComplexFuncBench dev and both demo-pack draws plan exactly as without it.
    strip_leading_space: bool = _option(
        True,
        "Drop the whitespace a string value starts with from the call (a word's token copied "
        "from the request brings the space before it), unless the value without it breaks the "
        "schema (the plan's notes say which values changed).",
        lever=True,
    )


#: Every option of `DecodeSettings`, in order: its field (name, type, default, help).
OPTIONS: tuple[dataclasses.Field, ...] = dataclasses.fields(DecodeSettings)
#: The decoding levers' names, in order.
LEVERS: tuple[str, ...] = tuple(f.name for f in OPTIONS if f.metadata["lever"])
#: The options a server sets for every request (``agentmem serve --no-jump-forward``): all
#: but those a chat request chooses itself (its tools, tool_choice, max calls and tokens).
SERVER_OPTIONS: tuple[str, ...] = tuple(
    f.name for f in OPTIONS if f.name not in ("tool_choice", "tools", "max_calls", "max_text_tokens")
)

#: Named settings: the library's defaults; every lever on (as tuned on the demo pack, where
#: every value is in the request: the defaults until real data decided them); every lever
#: off with the schema constraint kept (the baseline each lever must beat on real data); and
#: plain greedy decoding (no schema constraint either: what a runtime without agentmem's
#: decoder does with an exported model).
_LEVERS_OFF = DecodeSettings(
    **{name: (False if isinstance(getattr(DecodeSettings, name), bool) else 0.0) for name in LEVERS}
)
PRESETS: dict[str, DecodeSettings] = {
    "defaults": DecodeSettings(),
    "levers_on": DecodeSettings(
        copy_bias=3.0,
        drop_unfounded=True,
        reroute_unfounded=True,
        optional_bias=2.0,
        complete_plan=True,
        fall_back_to_text=True,
        route_by_last_turn=True,
        unique_enum_items=True,
        strip_leading_space=True,
    ),
    "levers_off": _LEVERS_OFF,
    "greedy": dataclasses.replace(_LEVERS_OFF, constrained=False),
}


def preset_options(name: str) -> dict[str, Any]:
    """The options where preset ``name`` differs from the defaults (for `AgentMem.plan`)."""
    preset, defaults = PRESETS[name], PRESETS["defaults"]
    return {f.name: getattr(preset, f.name) for f in OPTIONS if getattr(preset, f.name) != getattr(defaults, f.name)}


def options_help(extra: Sequence[tuple[str, str]] = (), indent: int = 4) -> str:
    """Each option and its help as a docstring's list (`DecodeSettings` then ``extra``),
    lines wrapped at 100 characters, each entry ``indent`` spaces in."""
    entries = [(f.name, f"{f.metadata['help']} Default: {f.default!r}.") for f in OPTIONS] + list(extra)
    lead = " " * indent
    return "\n".join(
        textwrap.fill(f"{name}: {text}", 100, initial_indent=lead, subsequent_indent=lead + "    ")
        for name, text in entries
    )
