"""The decoding loop: route to memory tokens, write each call's arguments, route again.

Requests decode together in a `Batch` (`agentmem.decoding.batch`): rows join at a step
boundary and every step is one forward pass over a packed key/value cache
(`agentmem.packing`); a row that finishes (or is stopped: `Batch.stop`) leaves at once.
`Decoder.decode` runs one batch of prompts to the end; `agentmem.scheduler` lets rows join a
batch that is already decoding (continuous batching). Each request is a small state machine
(`agentmem.decoding.machine`, its state a `Row`):

* ``route``: the next token is chosen among the allowed memory tokens and end-of-plan; at
  the first step ``tool_choice="auto"`` also allows ordinary text (an answer instead of a
  plan), while ``"any"`` and a named tool allow memory tokens only (`RouteMask`);
* ``arguments``: after a memory token, tokens are chosen under that tool's JSON Schema until
  the object closes; the text is then parsed and validated into a ToolCall or an
  InvalidToolCall, and routing resumes;
* ``text``: the model answered in words; memory tokens are masked until end-of-sequence.

The levers are named objects, each in one place:

* token levers, score processors ``(row, scores) -> scores`` applied in order to an
  argument step (`agentmem.decoding.processors`): `GrammarMask`, `CopyBias`
  (``copy_bias``), `OptionalBias` (``optional_bias``), `ReferenceGuard` (a token starting a
  ``$var1.field$`` reference is passed over);
* call levers, policies that judge a finished call (or a plan's end) and return a verdict
  the machine applies (`agentmem.decoding.policies`): `DropUnfounded`
  (``drop_unfounded``), `Reroute` (``reroute_unfounded``), `CompletePlan`
  (``complete_plan``), `FallBackToText` (``fall_back_to_text``: words or a call at the
  plan's start, from the routing probabilities), and the guards
  `RunawayGuard` (an argument repeating itself stops early, an invalid call) and
  `RepeatGuard` (the same call twice in a row ends the plan, also where a resumed agent
  run makes again the call it resumes after).

The routing lever ``route_by_last_turn`` is the machine's own: with a conversation, a plan's
first call goes to the tool the last user message alone scores highest
(`Decoder.memory_scores`, one more forward pass when a row joins its batch).

Drafts (`agentmem.decoding.drafts`: the tokens the grammar forces, the request's next
tokens after a copied span) are fed in the forward pass of the token before them and checked
one by one on the next step, as if decoded alone: fewer passes, the same plan. The LM head
is computed only as far as a step reads it (`agentmem.decoding.batch.Scores`): the
whole vocabulary where text or a string goes on, a few columns where the grammar allows a
few tokens or routing after a call reads end-of-plan and the memory tokens.

Every option, its default and its words live in `DecodeSettings`
(`agentmem.decoding.settings`), with the named `PRESETS`. Model output never raises:
whatever does not parse or validate becomes an invalid call with its reason.

Names resolve on first use (PEP 562), so that the settings (`agentmem.decoding.settings`,
torch-free) load without the model code, as the CLI's parser does.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentmem.decoding.batch import MODEL_LOCK, Batch
    from agentmem.decoding.machine import Decoder
    from agentmem.decoding.settings import LEVERS, OPTIONS, PRESETS, DecodeSettings, ToolChoice, preset_options
    from agentmem.decoding.state import BankView, Row
    from agentmem.tools.calls import InvalidToolCall, ToolCall

# Public name -> the module that defines it.
_LAZY = {
    "MODEL_LOCK": "agentmem.decoding.batch",
    "Batch": "agentmem.decoding.batch",
    "Decoder": "agentmem.decoding.machine",
    "LEVERS": "agentmem.decoding.settings",
    "OPTIONS": "agentmem.decoding.settings",
    "PRESETS": "agentmem.decoding.settings",
    "DecodeSettings": "agentmem.decoding.settings",
    "ToolChoice": "agentmem.decoding.settings",
    "preset_options": "agentmem.decoding.settings",
    "BankView": "agentmem.decoding.state",
    "Row": "agentmem.decoding.state",
    "InvalidToolCall": "agentmem.tools.calls",
    "ToolCall": "agentmem.tools.calls",
}

__all__ = [
    "LEVERS",
    "MODEL_LOCK",
    "OPTIONS",
    "PRESETS",
    "BankView",
    "Batch",
    "DecodeSettings",
    "Decoder",
    "InvalidToolCall",
    "Row",
    "ToolCall",
    "ToolChoice",
    "preset_options",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
