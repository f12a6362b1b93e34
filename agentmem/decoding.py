"""The decoding loop: route to memory tokens, write each call's arguments, route again.

Requests decode together in a `Batch`: rows join at a step boundary and every step is one
forward pass over a packed key/value cache (`agentmem.packing`) that feeds each decoding
row's next token and the joining rows' prompts (chunked, from where the shared prompt prefix
ends); a row that finishes (or is stopped: `Batch.stop`) leaves the batch at once. `Decoder.decode`
runs one batch of prompts to the end; `agentmem.scheduler` lets rows join a batch that is
already decoding (continuous batching). Each request is a small state machine:

* ``route``: the next token is chosen among the allowed memory tokens and end-of-plan;
  at the first step ``tool_choice="auto"`` also allows ordinary text (an answer instead
  of a plan), while ``"any"`` and a named tool allow memory tokens only;
* ``arguments``: after a memory token, tokens are chosen under that tool's JSON Schema
  (grammar-constrained, memory tokens masked) until the object closes; the text is then
  parsed and validated into a ToolCall or an InvalidToolCall, and routing resumes. Two
  guards run on every argument token: a token that would start a result reference
  (``$var1.field$``, the syntax of NESTFUL's data, which no executor resolves) is passed
  over for the next best one, and an argument that keeps repeating itself (a runaway
  string) is stopped early and becomes an invalid call. With ``copy_bias``, tokens that
  continue a span (or a number) of the request inside a value get a bonus
  (`agentmem.copying`). With ``reroute_unfounded``, a finished call holding a value the
  request does not (or breaking its schema) sends the row back to its routing decision
  to decode the next likeliest tools there too; the best-founded call is kept
  (`Decoder._reroute`). With ``complete_plan``, when the model ends a plan, the likeliest
  next tool's call is decoded first and kept if it reads a new part of the request
  (`Decoder._extension_kept`);
* ``text``: the model answered in words; memory tokens are masked until end-of-sequence.

Model output never raises: whatever does not parse or validate becomes an invalid call
with its reason.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from agentmem import memory
from agentmem.backbone import Backbone
from agentmem.chat import POLICIES
from agentmem.copying import (
    CopyIndex,
    depth,
    first_tokens,
    found_in,
    repeated_optional,
    stated_arguments,
    unfounded,
    unfounded_optional,
    value_number,
    value_string,
)
from agentmem.encoding import template_prefix
from agentmem.errors import UnknownToolError
from agentmem.grammar import ArgumentGrammar, ArgumentMatcher
from agentmem.locking import FairLock
from agentmem.memory import MemoryBank
from agentmem.packing import PackedCache
from agentmem.tools.calls import InvalidToolCall, Plan, ToolCall
from agentmem.tools.parsing import canonical_json, parse_call
from agentmem.tools.spec import ToolSpec

ToolChoice = str  # one of POLICIES ("auto" | "any" | "none") or a tool name; see agentmem.chat.tool_choice_policy

#: One model call at a time in a process, whichever bank or front end makes it: banks share
#: backbones, backbones share tokenizers (an adapted backbone keeps its base's), a fast
#: tokenizer is not thread-safe, and two decodes on one device only compete for it.
MODEL_LOCK = FairLock()  # first come first served, so a step loop cannot starve a request


@dataclass
class DecodeSettings:
    """Limits and policy of one planning call."""

    tool_choice: ToolChoice = "auto"
    tools: Sequence[str] | None = None  # restrict routing to these learned tools
    max_calls: int = 8
    max_argument_tokens: int = 128
    max_text_tokens: int = 256
    constrained: bool = True
    # Bonus to tokens that continue a span (or a number) of the request inside a value
    # (copy-aware decoding). With rerouting, 3 against 0 on the demo pack's two held-out
    # draws: argument F1 +16.7 / +16.2 points (BENCHMARKS.md, "third pass").
    copy_bias: float = 3.0
    # Leave out optional arguments whose values are not in the request (`copying.unfounded_optional`).
    drop_unfounded: bool = True
    # When a call holds a value the request does not (`copying.unfounded`) or breaks its
    # schema, decode the next likeliest tools there too and keep the best-founded call
    # (`Decoder._reroute`). Tool F1 +11 / +17 points on the two held-out draws (BENCHMARKS.md).
    reroute_unfounded: bool = True
    # Bonus to writing one more argument (a comma at the arguments' top level) while an
    # optional property is unwritten: the model leaves out optional arguments the request
    # gives ("Alert me on Tuesday at ..." without its date). What it then writes but the
    # request does not hold, or repeats another argument, `drop_unfounded` leaves out.
    # 2 on the demo pack's two held-out draws: argument F1 +6.2 / +6.7 points (BENCHMARKS.md).
    optional_bias: float = 2.0
    # Before a plan ends, decode the likeliest next tool's call (if the model gave it at
    # least _EXTENSION_MIN_PROBABILITY) and keep it when its values are all in the request
    # and one of them is used by no earlier call (`Decoder._extension_kept`): a small model
    # often ends a two-part request after its first part ("... Also remind me to pack an
    # umbrella at 07:30" with the weather call alone).
    complete_plan: bool = True
    # With tool_choice="auto" and rerouting: when every tool tried for a plan's first call
    # invents a value or breaks its schema (or the call's arguments run away), answer in
    # words instead (the model's likeliest text at that routing decision): "What's your
    # name?" is not an email to an invented address. Demo pack: requests that need no tool
    # answered in words 6/20 -> 16/20, tool requests unchanged but one (BENCHMARKS.md).
    fall_back_to_text: bool = True


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
class _Tried:
    """One call decoded at a routing decision, kept while other tools are tried there."""

    tool: str
    probability: float
    tokens: list[int]  # its argument tokens
    step: ToolCall | InvalidToolCall
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
class _Row:
    """Decoding state of one request."""

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
    first_tokens: frozenset[int] | None = None  # each request word's first token (`copying.first_tokens`)
    # Rerouting (`DecodeSettings.reroute_unfounded`): the tools still to try at the last
    # routing decision, the calls decoded there so far, and what the cache must undo or replay.
    alternatives: list[tuple[str, float]] = field(default_factory=list)
    tried: list[_Tried] = field(default_factory=list)
    probability: float = 1.0  # of the tool being decoded, at its routing decision
    likelihood: float = 0.0  # log-probability of the call's argument tokens so far
    replay: list[int] = field(default_factory=list)  # argument tokens to write again (a call chosen earlier)
    extending: bool = False  # the call being decoded is one the model would not have made (`complete_plan`)
    # the likeliest text token at the first routing decision (`fall_back_to_text`), None where text may not answer
    text_token: int | None = None
    rewind: int = 0  # tokens to take back out of the cache before the next one goes in
    feed: int | None = None  # the token to feed instead of the one just chosen
    submitted: float = 0.0  # perf_counter() times: asked for, prefilled, done
    started: float = 0.0
    prefilled: float = 0.0
    # Where the row lies in its `Batch`: its cache columns' owner, whether it sees the shared
    # prefix, the tokens still to feed (the prompt's, then each chosen token), the position
    # of the first of them, and the hidden state the next token is chosen from.
    owner: int = 0
    shared: bool = False
    unfed: list[int] = field(default_factory=list)
    position: int = 0
    hidden: torch.Tensor | None = None

    @property
    def done(self) -> bool:
        return self.mode == "done"

    @property
    def request(self) -> str:
        """The request's text (``source`` holds its bytes, seen through latin-1)."""
        return self.source.encode("latin-1").decode("utf-8", errors="replace")


class Decoder:
    """Plans requests with a backbone, a memory bank and the bank's tool specs."""

    def __init__(self, backbone: Backbone, bank: MemoryBank, specs: Mapping[str, ToolSpec]) -> None:
        self.backbone = backbone
        self.bank = bank
        self.specs = specs
        self.grammar = ArgumentGrammar(backbone.tokenizer, backbone.vocab_size)
        self._stops = backbone.stop_token_ids  # what ends a text answer besides the end of turn
        self._copy_index: CopyIndex | None = None  # built on first use of copy_bias
        self._continue_ids: list[int] | None = None  # built on first use of optional_bias
        self._byte_texts: list[str] | None = None  # built on first use (`byte_texts`)
        self._prefix: tuple[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] | None = None

    @property
    def byte_texts(self) -> list[str]:
        """Each token's bytes seen through latin-1 (one character per byte; index = token id),
        so a Japanese name whose characters span several tokens is copied as well as an
        ASCII one, and a token's punctuation is read whatever its encoding."""
        if self._byte_texts is None:
            self._byte_texts = [b.decode("latin-1") for b in self.grammar.token_bytes()]
        return self._byte_texts

    @property
    def copy_index(self) -> CopyIndex:
        """Token texts (`byte_texts`) indexed for copy-aware decoding (built once, on first use)."""
        if self._copy_index is None:
            self._copy_index = CopyIndex(self.byte_texts)
        return self._copy_index

    @torch.no_grad()
    def shared_prefix(self) -> tuple[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]]:
        """The prompt start most requests share (`encoding.template_prefix`: the chat
        template's system prompt and header) and its key/values per layer, computed once
        (the backbone is frozen; the prefix holds no memory token, so no bank enters it)."""
        if self._prefix is None:
            ids = tuple(template_prefix(self.backbone.tokenizer))
            layers: list[tuple[torch.Tensor, torch.Tensor]] = []
            if ids:
                out = memory.decoder(self.backbone)(
                    inputs_embeds=memory.embed(
                        self.backbone, self.bank.rows.detach(), torch.tensor([ids]).to(self.backbone.device)
                    ),
                    past_key_values=DynamicCache(config=self.backbone.model.config),
                    use_cache=True,
                )
                layers = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
            self._prefix = (ids, layers)
        return self._prefix

    def view(self) -> BankView:
        """The bank as it is now, for a batch to decode against."""
        rows = self.bank.rows.detach()
        return BankView(tuple(self.bank.names), dict(self.specs), rows.to(self.backbone.device), rows.cpu().clone())

    def current(self, view: BankView) -> bool:
        """Whether the bank still equals ``view`` (so new rows may join a batch decoding with it)."""
        rows = self.bank.rows.detach()
        return (
            view.names == tuple(self.bank.names)
            and view.saved.shape == rows.shape
            and bool(torch.equal(view.saved, rows.cpu()))
        )

    def check(self, settings: DecodeSettings, view: BankView | None = None) -> list[int]:
        """Validates settings against the bank (or ``view`` of it); returns the allowed memory rows."""
        known = view.names if view is not None else tuple(self.bank.names)
        names = list(settings.tools) if settings.tools is not None else list(known)
        for name in names:
            if name not in known:
                raise UnknownToolError(f"unknown tool {name!r}; the bank holds: {', '.join(known) or 'none yet'}")
        choice = settings.tool_choice
        if choice not in POLICIES and choice not in names:
            raise UnknownToolError(
                f"tool_choice {choice!r} is neither one of {', '.join(POLICIES)} nor an allowed tool "
                f"({', '.join(names) or 'none'})"
            )
        if choice == "any" and not names:
            raise UnknownToolError("tool_choice requires a call but no tool is allowed")
        if settings.max_calls < 1:
            raise ValueError(f"max_calls must be >= 1, got {settings.max_calls}")
        if settings.copy_bias < 0:
            raise ValueError(f"copy_bias must be >= 0, got {settings.copy_bias}")
        return [known.index(n) for n in names]

    @torch.no_grad()
    def decode(
        self,
        prompts: Sequence[Sequence[int]],
        settings: DecodeSettings,
        sources: Sequence[str] | None = None,
        continued: Sequence[bool] | None = None,
    ) -> list[Plan]:
        """Plans a batch of tokenised prompts; one Plan per prompt.

        Args:
            prompts: Token ids of each chat-formatted request.
            settings: Limits and policy.
            sources: Each request's text (what argument values may be copied from), for
                ``settings.copy_bias``.
            continued: Whether each prompt already ends in calls of its plan (an agent run
                resumed, `agentmem.encoding.resumed_prompt_ids`): it routes as after a call.
        """
        with MODEL_LOCK:
            batch = Batch(self)
            rows = batch.add(
                prompts,
                [settings] * len(prompts),
                sources if sources is not None else [""] * len(prompts),
                continued if continued is not None else [False] * len(prompts),
            )
            while batch.rows:
                batch.step()
            return [row.plan for row in rows]

    def stop(self, state: _Row, finish: str, note: str) -> None:
        """Ends a row before the model does (a time limit, a cancelled request): a call in
        progress becomes an invalid call with ``note`` as its reason; text is kept."""
        if state.mode == "arguments":
            self._finish_call(state, state.settings, stopped=(note, finish))
        elif state.mode == "text":
            self._finish_text(state, finish)
        else:
            state.plan.finish_reason = finish
            state.mode = "done"
        state.plan.notes.append(note)

    def _step(self, state: _Row, scores: torch.Tensor, vocab: int, eos: int) -> int | None:
        """Chooses one request's next token and advances its state.

        Returns:
            The token to feed back, or None when the request needs no further step.
        """
        if state.done:
            return None
        settings = state.settings
        state.generated += 1
        if state.mode == "route":
            token = self._route(state, scores, vocab, eos)
        elif state.mode == "arguments":
            assert state.matcher is not None
            token, piece = self._argument_token(state, scores, settings)
            state.matcher.accept(token, piece)
            state.pending.append(token)
            state.text += piece
            repeat = _runaway(state.pending)
            if state.matcher.is_finished():
                self._finish_call(state, settings)
                if state.feed is not None:  # another tool is tried at the same routing decision
                    token, state.feed = state.feed, None
            elif repeat is not None:
                unit = self.backbone.tokenizer.decode(list(repeat))
                reason = f"arguments stopped after {len(state.pending)} tokens: they kept repeating {unit!r} (a runaway string)"
                token = self._give_up_call(state, settings, reason, "repetition", token)
            elif len(state.pending) >= settings.max_argument_tokens:
                reason = f"arguments did not close within {settings.max_argument_tokens} tokens"
                token = self._give_up_call(state, settings, reason, "length", token)
        else:  # text: memory tokens masked until end-of-sequence
            scores = scores.clone()
            scores[vocab:] = float("-inf")
            token = int(scores.argmax())
            if token in self._stops:  # the end of turn (eos) or the tokenizer's own eos
                self._finish_text(state, "stop")
            else:
                state.pending.append(token)
                if len(state.pending) >= settings.max_text_tokens:
                    self._finish_text(state, "length")
        return None if state.done else token

    def _argument_token(self, state: _Row, scores: torch.Tensor, settings: DecodeSettings) -> tuple[int, str]:
        """The next argument token (and its text): the grammar's best, unless it starts a
        result reference; with ``copy_bias``, tokens continuing a copy of the request first."""
        assert state.matcher is not None
        decode = self.backbone.tokenizer.decode
        if state.replay:  # a call decoded before is written again, token for token
            token = state.replay.pop(0)
            return token, decode([token])
        raw = scores
        masked = state.matcher.mask_logits(scores)
        if settings.copy_bias and state.source:
            masked = self._copy_bonus(state, masked, settings.copy_bias)
        if settings.optional_bias and self._optional_unwritten(state):
            ids = [i for i in self.continue_ids if masked[i] > float("-inf")]
            if ids:
                masked = masked.clone()
                masked[ids] += settings.optional_bias
        for _ in range(_REFERENCE_RETRIES):
            token = int(masked.argmax())
            piece = decode([token])
            if not _RESULT_REFERENCE_START.search(state.text[-8:] + piece):
                break
            masked[token] = float("-inf")
        if settings.reroute_unfounded:
            state.likelihood += float(torch.log_softmax(raw, dim=-1)[token])
        return token, piece

    @property
    def continue_ids(self) -> list[int]:
        """Tokens that go on to another member or item: a comma, after a value's closing quote."""
        if self._continue_ids is None:
            self._continue_ids = [i for i, t in enumerate(self.byte_texts) if re.match(r'^"?\s*,', t)]
        return self._continue_ids

    def _optional_unwritten(self, state: _Row) -> bool:
        """At the arguments' top level, with an optional property not written yet."""
        assert state.tool is not None
        parameters = (state.view.specs if state.view is not None else self.specs)[state.tool].parameters
        required = set(parameters.get("required", ()))
        optional = [k for k in parameters.get("properties", {}) if k not in required]
        return any(f'"{k}":' not in state.text for k in optional) and depth(state.text) == 1

    def _copy_bonus(self, state: _Row, masked: torch.Tensor, bias: float) -> torch.Tensor:
        index, texts = self.copy_index, self.byte_texts
        written = "".join(texts[t] for t in state.pending if t < len(texts))
        prefix = value_string(written)
        best = int(masked.argmax())
        best_text = texts[best] if best < len(texts) else ""
        if prefix is None:
            number = value_number(written)
            if number is None or (number and not best_text[:1].isdigit() and best_text[:1] != "."):
                return masked  # not in a number, or the model ends the number here
            found = index.number_candidates(state.source, number)
        elif best_text.startswith('"'):
            return masked  # the model closes the value here: copying must not drag it on
        else:
            found = index.candidates(state.source, prefix)
        if prefix == "":  # a string value opens: a word's own first token starts a copy too
            if state.first_tokens is None:
                encode = self.backbone.tokenizer.encode
                state.first_tokens = first_tokens(state.request, lambda w: encode(w, add_special_tokens=False))
            found |= state.first_tokens
        ids = [i for i in found if masked[i] > float("-inf")]
        if ids:
            masked = masked.clone()
            masked[ids] += bias
        return masked

    def _route(self, state: _Row, scores: torch.Tensor, vocab: int, eos: int) -> int | None:
        # A continued plan (an agent resuming after tool results) is past its first call:
        # no text answer, no forced first call, only the next call or end-of-plan.
        assert state.view is not None
        settings, view = state.settings, state.view
        first = not state.plan.steps and not state.continued
        choice = settings.tool_choice
        forced = first and choice not in POLICIES  # a named tool goes first
        rows = [view.index(choice)] if forced else state.allowed
        memory_ids = [vocab + r for r in rows]
        candidates = torch.full_like(scores, float("-inf"))
        candidates[memory_ids] = scores[memory_ids]
        if not forced and not (first and choice == "any"):
            candidates[eos] = scores[eos]
            # Text may answer instead of a plan, never trail one: a plan ends at eos.
            if first and choice == "auto":
                candidates[:vocab] = scores[:vocab]
                words = scores[:vocab].clone()
                words[[t for t in self._stops if t < vocab]] = float("-inf")
                state.text_token = int(words.argmax())
        token = int(candidates.argmax())
        if token == eos:
            # Not in a resumed plan: its earlier calls are in the prompt, not in `state.plan`, so
            # a call repeating one of them (an agent's loop) would look new.
            extension = (
                self._extension(state, candidates, memory_ids) if state.plan.steps and not state.continued else None
            )
            if extension is None:
                state.mode = "done"
                return None
            token, state.extending = extension, True
            self._start_call(state, view.names[token - vocab])
            return token
        if token < vocab:  # the model answers in words
            state.mode = "text"
            state.pending = [token]
            return token
        probabilities = torch.softmax(candidates, dim=-1)
        state.probability = float(probabilities[token])
        state.tried, state.alternatives = [], []
        if settings.reroute_unfounded and not forced:
            others = [i for i in memory_ids if i != token and float(probabilities[i]) >= _ALTERNATIVE_MIN_PROBABILITY]
            others.sort(key=lambda i: -float(probabilities[i]))
            state.alternatives = [(view.names[i - vocab], float(probabilities[i])) for i in others[:_ALTERNATIVES]]
        self._start_call(state, view.names[token - vocab])
        return token

    def _extension(self, state: _Row, candidates: torch.Tensor, memory_ids: Sequence[int]) -> int | None:
        """The memory token to try before ending the plan (`DecodeSettings.complete_plan`):
        the likeliest tool at the end, if the model gave it enough probability there."""
        if not (state.settings.complete_plan and state.source and memory_ids):
            return None
        probabilities = torch.softmax(candidates, dim=-1)
        best = max(memory_ids, key=lambda i: float(probabilities[i]))
        return best if float(probabilities[best]) >= _EXTENSION_MIN_PROBABILITY else None

    def _extension_kept(self, state: _Row, spec: ToolSpec, call: ToolCall | InvalidToolCall) -> bool:
        """Whether a call tried before the end of the plan is kept: it is valid, holds no
        value the request does not, and copies a value of the request that no earlier call
        holds (a new part of the request, not a second reading of a part already planned)."""
        if not isinstance(call, ToolCall) or unfounded(spec.parameters, call.arguments, state.request):
            return False
        used = {canonical_json(v).lower() for step in state.plan.calls for v in step.arguments.values()}
        return any(
            found_in(value, state.request) and canonical_json(value).lower() not in used
            for value in stated_arguments(spec.parameters, call.arguments).values()
        )

    def _start_call(self, state: _Row, tool: str) -> None:
        """Begins decoding a call's arguments (its memory token is the token fed next)."""
        assert state.view is not None
        state.tool = tool
        spec = state.view.specs[tool]
        settings = state.settings
        compiled = self.grammar.compile(spec.parameters) if settings.constrained else self.grammar.unconstrained()
        if compiled.fallback_reason and compiled.fallback_reason not in state.plan.notes:
            state.plan.notes.append(f"{tool}: decoded without grammar ({compiled.fallback_reason})")
        state.matcher = compiled.matcher()
        state.pending, state.text, state.likelihood = [], "", 0.0
        state.mode = "arguments"

    def _finish_call(self, state: _Row, settings: DecodeSettings, stopped: tuple[str, str] | None = None) -> None:
        """Parses the arguments into a call; ``stopped`` = (reason, finish_reason) ends the
        plan with an invalid call instead (a bound was hit, or the text ran away)."""
        assert state.tool is not None
        text = self.backbone.tokenizer.decode(state.pending)
        if stopped is not None and state.extending:  # a call the model would not have made: the plan ends as it chose
            self._end_plan(state)
            return
        if stopped is not None:
            reason, finish = stopped
            state.plan.steps.append(InvalidToolCall(name=state.tool, raw=text, reason=reason))
            state.plan.finish_reason = finish
            state.mode = "done"
            return
        specs = state.view.specs if state.view is not None else self.specs
        spec = specs[state.tool]
        call = parse_call(spec, text)
        notes: list[str] = []
        if isinstance(call, ToolCall) and settings.drop_unfounded and state.source:
            for key in unfounded_optional(spec.parameters, call.arguments, state.request):
                value = call.arguments.pop(key)
                notes.append(f"{call.name}: left out optional {key}={canonical_json(value)}, not in the request")
            for key in repeated_optional(spec.parameters, call.arguments):
                value = call.arguments.pop(key)
                notes.append(
                    f"{call.name}: left out optional {key}={canonical_json(value)}, a repeat of another argument"
                )
        if state.extending:
            if not self._extension_kept(state, spec, call):
                self._end_plan(state)
                return
            state.extending = False
            notes.append(
                f"added {call.name} before the end of the plan: it uses a part of the request no earlier call does"
            )
        elif settings.reroute_unfounded and state.source:
            chosen = self._reroute(state, spec, call, notes)
            if chosen is None:
                return  # another tool is decoded at the same routing decision
            call, notes = chosen
        state.plan.notes.extend(notes)
        state.tool, state.matcher, state.pending = None, None, []
        if _repeats(state.plan, call):
            # A small model can loop on one call; the same call twice in a row is never a plan.
            state.plan.notes.append(
                f"stopped at a repeat of the previous call {call.name}{canonical_json(call.arguments)}"
            )
            state.mode = "done"
            return
        state.plan.steps.append(call)
        if len(state.plan.steps) >= settings.max_calls:
            state.plan.finish_reason = "max_calls"
            state.mode = "done"
        else:
            state.mode = "route"

    def _end_plan(self, state: _Row) -> None:
        """Ends the plan where the model chose to, leaving out the call tried before the end
        (`complete_plan`): its tokens stay in the cache, but the row decodes no further."""
        state.extending, state.tool, state.matcher, state.pending = False, None, None, []
        state.mode = "done"

    def _reroute(
        self, state: _Row, spec: ToolSpec, call: ToolCall | InvalidToolCall, notes: list[str]
    ) -> tuple[ToolCall | InvalidToolCall, list[str]] | None:
        """Keeps a finished call, or goes back to its routing decision to try another tool.

        A call holding a value the request does not (a time "20:00" for "Drop a line to
        priya@..."), breaking its schema or repeating the previous call is often the sign
        of a wrong tool: the model had to invent what the tool needs. Then the next
        likeliest tools at that decision (`_ALTERNATIVES`, each at least
        `_ALTERNATIVE_MIN_PROBABILITY`) are decoded there too, until one call has no flaw.
        A founded call whose tool was uncertain (under `_UNCERTAIN`) is compared with its
        rivals' (tools at `_CONTENDER` or more). The best call wins (`_Tried.rank`). The
        row's cache takes back the call's tokens (`Batch.step`, `PackedCache.take_back`)
        and, when the winner is not the call just decoded, writes the winner's tokens
        again (``replay``).

        Returns:
            The call to keep, with its notes; None while another tool is being decoded.
        """
        assert state.tool is not None
        if isinstance(call, ToolCall):
            flaws = [
                f"{key}={canonical_json(call.arguments[key])} is not in the request"
                for key in unfounded(spec.parameters, call.arguments, state.request)
            ]
        else:
            flaws = [call.reason]
        if _repeats(state.plan, call):
            flaws.append("it repeats the previous call")
        replayed = bool(state.tried) and state.tried[-1].tokens == state.pending and state.tried[-1].tool == state.tool
        if not replayed:
            entry = _Tried(state.tool, state.probability, list(state.pending), call, notes, flaws, state.likelihood)
            state.tried.append(entry)
        tried = state.tried
        if len(tried) == 1 and not flaws:
            # founded: other tools only where the model hesitated, and only its close rivals
            close = state.probability < _UNCERTAIN
            state.alternatives = [a for a in state.alternatives if close and a[1] >= _CONTENDER]
        # after a flawed first call, until one has no flaw; after a founded one, every rival
        if state.alternatives and not replayed and (flaws or not tried[0].flaws):
            tool, state.probability = state.alternatives.pop(0)
            self._take_back(state, tool)
            return None
        best = min(tried, key=lambda t: t.rank)
        if best.flaws and self._answers_instead(state):
            first = tried[0]
            self._take_back_to_text(state)
            state.plan.notes.append(
                f"answered in words: every call tried invents a value or breaks its schema "
                f"({first.tool}'s: {'; '.join(first.flaws)})"
            )
            return None
        if best is not tried[-1]:
            state.alternatives = []
            state.probability = best.probability
            self._take_back(state, best.tool)
            state.replay = list(best.tokens)
            tried.append(best)  # so that the replayed call is known when it finishes
            return None
        if best is not tried[0]:
            first = tried[0]
            why = f"{first.tool}'s call: {'; '.join(first.flaws)}" if first.flaws else f"{best.tool}'s call is likelier"
            notes = [*best.notes, f"routed to {best.tool} rather than {first.tool}: {why}"]
        state.tried, state.alternatives = [], []
        return best.step, best.notes if best is tried[0] else notes

    def _take_back(self, state: _Row, tool: str) -> None:
        """Returns the row to its last routing decision and starts ``tool``'s call there."""
        assert state.view is not None
        # the memory token and every argument token but the last (chosen, never fed) are in the cache
        state.rewind = len(state.pending)
        state.feed = state.view.names.index(tool) + self.backbone.vocab_size
        self._start_call(state, tool)

    def _give_up_call(self, state: _Row, settings: DecodeSettings, reason: str, finish: str, token: int) -> int:
        """Ends a call whose arguments ran away or hit their bound: an invalid call that ends
        the plan, or, for a plan's first call that may give way to words (`_answers_instead`)
        before any other tool was tried, a text answer from the first routing decision.
        Returns the token to feed next."""
        # not while rerouting tries other tools (`state.tried`): a call decoded there may be founded
        if not state.tried and self._answers_instead(state):
            self._take_back_to_text(state)
            state.plan.notes.append(f"answered in words: the first call's {reason}")
            state.feed = None  # fed here, in place of the argument token just chosen
            return state.pending[0]
        self._finish_call(state, settings, stopped=(reason, finish))
        return token

    def _answers_instead(self, state: _Row) -> bool:
        """Whether a flawed first call gives way to a text answer (`DecodeSettings.fall_back_to_text`,
        with rerouting: a plan's first call, so never a call `complete_plan` tries)."""
        return (
            state.settings.fall_back_to_text
            and state.settings.reroute_unfounded
            and state.text_token is not None
            and not state.plan.steps
            and not state.continued
        )

    def _take_back_to_text(self, state: _Row) -> None:
        """Returns the row to its first routing decision and answers in words from there."""
        assert state.text_token is not None
        state.rewind = len(state.pending)
        state.feed = state.text_token
        state.tried, state.alternatives = [], []
        state.tool, state.matcher, state.text = None, None, ""
        state.pending = [state.text_token]
        state.mode = "text"

    def _finish_text(self, state: _Row, reason: str) -> None:
        state.plan.text = self.backbone.tokenizer.decode(state.pending, skip_special_tokens=True).strip()
        state.plan.finish_reason = reason
        state.mode = "done"


class Batch:
    """A running decoding batch over one decoder: rows join at a step boundary and leave when done.

    Every step is one forward pass over a packed sequence (`agentmem.packing`): the next
    token of each decoding row and the prompt tokens of rows joining, up to
    ``prefill_tokens`` of them a step (a long prompt is prefilled over several steps,
    chunked, so the rows decoding are never held up for long). A row that starts with the
    decoder's shared prefix (`Decoder.shared_prefix`) is prefilled from its own tokens on. A
    row that finishes (or is stopped) leaves the batch at once; its cache columns are
    compacted away later.

    A batch decodes with the bank as it was when the batch began (`BankView`); the caller
    holds `MODEL_LOCK` around each call (the tokenizer and the model are shared).

    Attributes:
        rows: The rows in the batch (prefilling or decoding), in the order they joined.
        steps: Forward steps run.
    """

    def __init__(self, decoder: Decoder, *, prefill_tokens: int = 256) -> None:
        if prefill_tokens < 1:
            raise ValueError(f"prefill_tokens must be >= 1, got {prefill_tokens}")
        self.decoder = decoder
        self.view = decoder.view()
        self.rows: list[_Row] = []
        self.steps = 0
        self.prefill_tokens = prefill_tokens
        self._cache: PackedCache | None = None
        self._prefix: tuple[int, ...] = ()
        self._owners = 0  # the last owner id given to a row

    @torch.no_grad()
    def add(
        self,
        prompts: Sequence[Sequence[int]],
        settings: Sequence[DecodeSettings],
        sources: Sequence[str],
        continued: Sequence[bool],
        submitted: Sequence[float] | None = None,
    ) -> list[_Row]:
        """Adds prompts to the batch; they are prefilled by the next steps. Returns their rows.

        Raises:
            UnknownToolError: A setting names a tool the batch's bank lacks (nothing is added).
        """
        allowed = [self.decoder.check(s, self.view) for s in settings]
        if self._cache is None and prompts:
            self._start()
        started = time.perf_counter()
        rows = []
        for i, (p, s, a, t, c) in enumerate(zip(prompts, settings, allowed, sources, continued)):
            shared = len(self._prefix) < len(p) and tuple(p[: len(self._prefix)]) == self._prefix
            self._owners += 1
            rows.append(
                _Row(
                    prompt_tokens=len(p),
                    settings=s,
                    allowed=a,
                    view=self.view,
                    source=t.encode("utf-8").decode("latin-1"),
                    continued=c,
                    mode="text" if s.tool_choice == "none" else "route",
                    submitted=started if submitted is None else submitted[i],
                    started=started,
                    owner=self._owners,
                    shared=shared,
                    unfed=list(p[len(self._prefix) :] if shared else p),
                    position=len(self._prefix) if shared else 0,
                )
            )
        self.rows += rows
        return rows

    @torch.no_grad()
    def step(self) -> list[_Row]:
        """Chooses the next token of every decoding row, then runs one forward pass over
        those tokens and the next prompt tokens of the rows prefilling; returns the rows
        that finished (and left the batch)."""
        if not self.rows:
            return []
        decoding = [row for row in self.rows if row.hidden is not None]
        finished = []
        if decoding:
            backbone, decoder = self.decoder.backbone, self.decoder
            vocab, eos = backbone.vocab_size, backbone.eos_token_id
            hidden = torch.stack([row.hidden for row in decoding])  # type: ignore[misc]
            scores = memory.logits(backbone, self.view.rows, hidden).float()
            for i, row in enumerate(decoding):
                token = decoder._step(row, scores[i], vocab, eos)
                if token is None:
                    finished.append(row)
                    continue
                if row.rewind:
                    # Rerouted: the row's last tokens leave the cache, and its next token
                    # takes the position of the first of them.
                    assert self._cache is not None
                    self._cache.take_back(row.owner, row.rewind)
                    row.position -= row.rewind
                    row.rewind = 0
                row.unfed = [token]
            self._drop(finished)
        if self.rows:
            self._forward()
        return finished

    def stop(self, rows: Sequence[_Row], finish: str, note: str) -> None:
        """Ends ``rows`` now (`Decoder.stop`) and drops them from the batch."""
        for row in rows:
            self.decoder.stop(row, finish, note)
        self._drop([row for row in self.rows if row.done])

    def _start(self) -> None:
        """A fresh cache, holding the decoder's shared prefix."""
        backbone = self.decoder.backbone
        parameter = next(backbone.model.parameters())
        self._cache = PackedCache(backbone.model.config, parameter.dtype, parameter.device)
        prefix, layers = self.decoder.shared_prefix()
        if prefix:
            self._cache.store_prefix(layers)
        self._prefix = prefix

    def _forward(self) -> None:
        """One forward pass over each row's next tokens: one for a decoding row, the next
        chunk of its prompt for a prefilling one (within ``prefill_tokens``)."""
        assert self._cache is not None
        backbone = self.decoder.backbone
        budget = self.prefill_tokens
        ids: list[int] = []
        owners: list[int] = []
        positions: list[int] = []
        shared: list[bool] = []
        last: list[tuple[_Row, int]] = []  # rows whose next token the pass predicts, and where
        for row in self.rows:
            prefilling = row.hidden is None
            count = min(len(row.unfed), budget) if prefilling else len(row.unfed)
            if not count:
                continue
            if prefilling:
                budget -= count
            ids += row.unfed[:count]
            owners += [row.owner] * count
            positions += range(row.position, row.position + count)
            shared += [row.shared] * count
            row.unfed, row.position = row.unfed[count:], row.position + count
            if not row.unfed:
                last.append((row, len(ids) - 1))
        mask = self._cache.append(
            torch.tensor(owners, dtype=torch.long), torch.tensor(positions, dtype=torch.long), torch.tensor(shared)
        )
        device = backbone.device
        out = memory.decoder(backbone)(
            inputs_embeds=memory.embed(backbone, self.view.rows, torch.tensor([ids], dtype=torch.long).to(device)),
            attention_mask=mask,
            position_ids=torch.tensor([positions], dtype=torch.long).to(device),
            past_key_values=self._cache,
            use_cache=True,
        )
        hidden = out.last_hidden_state[0]
        now = time.perf_counter()
        for row, index in last:
            if row.hidden is None:
                row.prefilled = now
            row.hidden = hidden[index]
        self.steps += 1

    def _drop(self, rows: Sequence[_Row]) -> list[_Row]:
        """Removes rows (done ones) from the batch; stamps their usage and timings."""
        if not rows:
            return []
        gone = {id(row) for row in rows}
        dropped = [row for row in self.rows if id(row) in gone]
        self.rows = [row for row in self.rows if id(row) not in gone]
        if self._cache is not None:
            self._cache.release([row.owner for row in dropped])
        finished = time.perf_counter()
        for row in dropped:
            row.hidden, row.unfed = None, []
            prefilled = row.prefilled or finished  # a row stopped before its prompt was in
            row.plan.usage = {"prompt_tokens": row.prompt_tokens, "generated_tokens": row.generated}
            row.plan.timings = {
                "prefill": prefilled - row.started,
                "decode": finished - prefilled,
                "total": finished - row.submitted,
            }
            if row.started > row.submitted:
                row.plan.timings["queue"] = row.started - row.submitted
        return dropped


# Rerouting: at most this many other tools are tried at a routing decision, each only if
# the model gave it at least this probability there.
_ALTERNATIVES = 3
_ALTERNATIVE_MIN_PROBABILITY = 0.02
# A founded call whose tool had less than this probability is compared with the calls of
# the tools that had at least _CONTENDER ("Rate check: 19.9 SGD in BRL?": get_weather 0.57
# with city "BRL", convert_currency 0.30): the likelier call, tool and arguments, wins.
_UNCERTAIN = 0.7
_CONTENDER = 0.2
# complete_plan: the likeliest tool at the end of a plan is tried only from this probability.
_EXTENSION_MIN_PROBABILITY = 0.05


def _repeats(plan: Plan, call: ToolCall | InvalidToolCall) -> bool:
    """Whether ``call`` is the plan's last call again (same tool, same arguments)."""
    previous = plan.steps[-1] if plan.steps else None
    return (
        isinstance(call, ToolCall)
        and isinstance(previous, ToolCall)
        and (call.name, call.arguments) == (previous.name, previous.arguments)
    )


# A token that would make the argument text hold "$var" starts a result reference.
_RESULT_REFERENCE_START = re.compile(r"\$var")
_REFERENCE_RETRIES = 8

# A runaway string: the last tokens are one unit of 1-8 tokens repeated, over at least
# 16 tokens (and 3 units). Shorter runs are legitimate ("...", "1000000", "ha ha ha").
_RUNAWAY_SPAN = 16
_RUNAWAY_UNIT = 8


def _runaway(tokens: Sequence[int]) -> tuple[int, ...] | None:
    """The repeated unit when ``tokens`` end in a runaway repetition, else None."""
    for unit in range(1, _RUNAWAY_UNIT + 1):
        span = max(_RUNAWAY_SPAN, 3 * unit)
        span += -span % unit  # whole units
        if len(tokens) < span:
            continue
        tail = tokens[-span:]
        if all(tail[i] == tail[i % unit] for i in range(span)):
            return tuple(tail[:unit])
    return None


__all__ = ["MODEL_LOCK", "Batch", "BankView", "Decoder", "DecodeSettings", "ToolCall", "InvalidToolCall"]
