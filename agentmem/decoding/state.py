"""The state of one request being decoded (`Row`), split by who owns it.

The state machine owns the mode, the plan and the call being written; each lever keeps its
own state beside it (`RerouteState`, `CopyState`, `CompleteState`, defined here so that the
levers import the row and nothing imports back), and the batch keeps where the row lies in
its cache (`Slot`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from agentmem.decoding.settings import DecodeSettings
from agentmem.grammar import ArgumentMatcher
from agentmem.tools.calls import InvalidToolCall, Plan, ToolCall
from agentmem.tools.spec import ToolSpec

Step = ToolCall | InvalidToolCall


# Each lever's own state on a row (the levers themselves: `processors`, `policies`).


@dataclass
class CopyState:
    """Copy bias's state on a row: each request word's first token (`copying.first_tokens`), built once."""

    first_tokens: frozenset[int] | None = None


@dataclass
class CompleteState:
    """Complete-plan's state on a row: whether the call being decoded is one the model would not have made."""

    extending: bool = False


@dataclass
class Tried:
    """One call decoded at a routing decision, kept while other tools are tried there."""

    tool: str
    probability: float
    tokens: list[int]  # its argument tokens
    step: Step
    notes: list[str]
    flaws: list[str]  # why it is not founded: unfounded values, the schema it breaks, a repeat
    likelihood: float  # log-probability of its argument tokens under the model

    @property
    def badness(self) -> tuple[bool, int]:
        return isinstance(self.step, InvalidToolCall), len(self.flaws)

    @property
    def rank(self) -> tuple[tuple[bool, int], float]:
        """Lower is better: fewer flaws first; among founded calls the likelier call (tool
        and arguments together), among flawed ones the likelier tool."""
        if self.badness == (False, 0):
            return self.badness, -(math.log(max(self.probability, 1e-12)) + self.likelihood)
        return self.badness, -self.probability


@dataclass
class RerouteState:
    """Reroute's state on a row: the tools still to try at the last routing decision, the
    calls decoded there so far, the probability of the tool being decoded, the
    log-probability of its argument tokens so far, and a call's tokens to write again."""

    alternatives: list[tuple[str, float]] = field(default_factory=list)
    tried: list[Tried] = field(default_factory=list)
    probability: float = 1.0
    likelihood: float = 0.0
    replay: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class BankView:
    """The bank as a batch started with: its rows join and route against this, so a bank
    changed while rows decode (a tool learned or forgotten) never mixes two banks in a row."""

    names: tuple[str, ...]
    specs: Mapping[str, ToolSpec]
    rows: torch.Tensor  # on the backbone's device
    saved: torch.Tensor  # a CPU copy, to tell whether the bank still equals this view

    def index(self, name: str) -> int:
        return self.names.index(name)


@dataclass
class Slot:
    """Where a row lies in its `Batch`: its cache columns' owner, whether it sees the shared
    prefix, the tokens still to feed (the prompt's, then each chosen token and its draft),
    the position of the first of them, the hidden states the next tokens are chosen from
    (one per token fed last: the chosen one's, then each drafted one's), the drafted tokens
    in the cache awaiting their check, and how many tokens to take back out of the cache
    before the next one goes in (a call rerouted, drafted tokens not chosen)."""

    owner: int = 0
    shared: bool = False
    unfed: list[int] = field(default_factory=list)
    position: int = 0
    hidden: torch.Tensor | None = None
    drafted: list[int] = field(default_factory=list)
    rewind: int = 0
    passes: int = 0  # forward passes that fed the row a chosen token (prefill not counted)


@dataclass
class Clock:
    """``perf_counter()`` times of a request: asked for, started decoding, prefilled."""

    submitted: float = 0.0
    started: float = 0.0
    prefilled: float = 0.0


@dataclass
class Row:
    """Decoding state of one request.

    Modes: ``route`` (the next token is a memory token, end-of-plan or, at a plan's start,
    text), ``arguments`` (a call's arguments are being written), ``text`` (an answer in
    words) and ``done``.
    """

    prompt_tokens: int
    settings: DecodeSettings = field(default_factory=DecodeSettings)
    allowed: list[int] = field(default_factory=list)  # the memory rows routing may choose
    view: BankView | None = None
    # the request's UTF-8 bytes seen through latin-1 (as `Decoder.byte_texts`): values are copied from it
    source: str = ""
    # what copy_bias favours copying from (`encoding.copy_source_text`), the same latin-1
    # view; None: the source
    copy_source: str | None = None
    # the last call the prompt already ends in when it resumes this plan (an agent run), else None
    resumes_after: ToolCall | None = None
    # route_by_last_turn: the memory rows' scores after the last user message alone, or None
    last_turn: torch.Tensor | None = None
    mode: str = "route"
    plan: Plan = field(default_factory=Plan)
    tool: str | None = None
    matcher: ArgumentMatcher | None = None
    pending: list[int] = field(default_factory=list)  # argument or text tokens so far
    text: str = ""  # the argument text so far
    generated: int = 0
    feed: int | None = None  # the token to feed instead of the one just chosen
    # each lever's own state
    reroute: RerouteState = field(default_factory=RerouteState)
    complete: CompleteState = field(default_factory=CompleteState)
    copy: CopyState = field(default_factory=CopyState)
    # the batch's
    slot: Slot = field(default_factory=Slot)
    clock: Clock = field(default_factory=Clock)

    @property
    def done(self) -> bool:
        return self.mode == "done"

    @property
    def continued(self) -> bool:
        """The prompt already ends in calls of this plan: it routes as after a call."""
        return self.resumes_after is not None

    @property
    def previous_call(self) -> ToolCall | InvalidToolCall | None:
        """The plan's last call so far, or the one its prompt ends in when it resumes."""
        return self.plan.steps[-1] if self.plan.steps else self.resumes_after

    @property
    def first(self) -> bool:
        """At the plan's first call: no call made yet, and the prompt holds none of this plan."""
        return not self.plan.steps and not self.continued

    @property
    def request(self) -> str:
        """The request's text (``source`` holds its bytes, seen through latin-1)."""
        return self.source.encode("latin-1").decode("utf-8", errors="replace")

    @property
    def copied(self) -> str:
        """What copy_bias favours copying from: ``copy_source``, else ``source`` (latin-1 view)."""
        return self.source if self.copy_source is None else self.copy_source

    @property
    def copied_text(self) -> str:
        """The text of ``copied``."""
        return self.copied.encode("latin-1").decode("utf-8", errors="replace")

    @property
    def spec(self) -> ToolSpec:
        """The spec of the tool whose call is being written."""
        assert self.view is not None and self.tool is not None
        return self.view.specs[self.tool]
