"""The state of one request being decoded (`Row`), split by who owns it.

The state machine owns the mode, the plan and the call being written; each lever keeps its
own state beside it (`RerouteState`, `CopyState`, `CompleteState`, `FallbackState`, each
defined with its lever), and the batch keeps where the row lies in its cache (`Slot`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from agentmem.decoding.policies import CompleteState, FallbackState, RerouteState
from agentmem.decoding.processors import CopyState
from agentmem.decoding.settings import DecodeSettings
from agentmem.grammar import ArgumentMatcher
from agentmem.tools.calls import Plan
from agentmem.tools.spec import ToolSpec


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
    prefix, the tokens still to feed (the prompt's, then each chosen token), the position of
    the first of them, the hidden state the next token is chosen from, and how many tokens
    to take back out of the cache before the next one goes in (a call rerouted)."""

    owner: int = 0
    shared: bool = False
    unfed: list[int] = field(default_factory=list)
    position: int = 0
    hidden: torch.Tensor | None = None
    rewind: int = 0


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
    continued: bool = False  # the prompt already ends in calls of this plan: route as after a call
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
    fallback: FallbackState = field(default_factory=FallbackState)
    copy: CopyState = field(default_factory=CopyState)
    # the batch's
    slot: Slot = field(default_factory=Slot)
    clock: Clock = field(default_factory=Clock)

    @property
    def done(self) -> bool:
        return self.mode == "done"

    @property
    def first(self) -> bool:
        """At the plan's first call: no call made yet, and the prompt holds none of this plan."""
        return not self.plan.steps and not self.continued

    @property
    def request(self) -> str:
        """The request's text (``source`` holds its bytes, seen through latin-1)."""
        return self.source.encode("latin-1").decode("utf-8", errors="replace")

    @property
    def spec(self) -> ToolSpec:
        """The spec of the tool whose call is being written."""
        assert self.view is not None and self.tool is not None
        return self.view.specs[self.tool]
