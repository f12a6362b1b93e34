"""The per-request state machine: route, write a call's arguments, route again, or answer in words.

`Decoder.step` chooses one row's next token and advances its state: the token-level levers
shape the scores (`agentmem.decoding.processors`), the call-level levers judge each call as it
finishes (`agentmem.decoding.policies`) and this module applies their verdicts: keep the call,
take it back to try another tool or replay one, or end the plan. Taking a
call back sets how many tokens the batch must take out of the row's cache (``slot.rewind``)
and which token to feed instead (``feed``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch
from transformers import DynamicCache

from agentmem import memory
from agentmem.backbone import Backbone, cache_argument, returned_cache
from agentmem.chat import POLICIES
from agentmem.copying import CopyIndex
from agentmem.decoding.batch import MODEL_LOCK, Batch, Scores
from agentmem.decoding.drafts import Drafter
from agentmem.decoding.policies import (
    CompletePlan,
    DropUnfounded,
    EndPlan,
    FallBackToText,
    Keep,
    Policies,
    RepeatGuard,
    Replay,
    Reroute,
    RunawayGuard,
    StripLeadingSpace,
    TryTool,
    Verdict,
)
from agentmem.decoding.processors import (
    CopyBias,
    GrammarMask,
    OptionalBias,
    ReferenceGuard,
    RouteMask,
    TextMask,
    UniqueEnumItems,
)
from agentmem.decoding.settings import DecodeSettings
from agentmem.decoding.state import BankView, Row
from agentmem.encoding import template_prefix
from agentmem.errors import UnknownToolError
from agentmem.grammar import ArgumentGrammar
from agentmem.memory import MemoryBank
from agentmem.tools.calls import InvalidToolCall, Plan, ToolCall
from agentmem.tools.parsing import parse_call
from agentmem.tools.spec import ToolSpec


class Decoder:
    """Plans requests with a backbone, a memory bank and the bank's tool specs.

    Attributes:
        route_mask, text_mask: The scores' masks at routing steps and in text answers.
        argument_processors: The score processors of an argument step, in the order applied.
        levers: Every call-level policy with its thresholds; a request uses those its
            settings turn on (`Policies.assemble`).
    """

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
        tokenizer, vocab = backbone.tokenizer, backbone.vocab_size

        def encode(text: str) -> list[int]:
            return tokenizer.encode(text, add_special_tokens=False)

        self.route_mask = RouteMask(vocab, backbone.eos_token_id)
        self.text_mask = TextMask(vocab)
        # The bonuses first, then the guards that walk down from the argmax: a guard before
        # a bonus checks a token the bonus then outbids (copy_bias once wrote lockDoors'
        # doors again and again past unique_enum_items).
        self.argument_processors = (
            GrammarMask(),
            CopyBias(
                lambda: self.copy_index,
                lambda: self.byte_texts,
                encode,
            ),
            OptionalBias(lambda: self.continue_ids),
            UniqueEnumItems(tokenizer.decode),
            ReferenceGuard(tokenizer.decode),
        )
        self.drafter = Drafter(encode)
        self.levers = Policies(
            runaway=RunawayGuard(),
            repeat=RepeatGuard(),
            strip_leading_space=StripLeadingSpace(),
            drop_unfounded=DropUnfounded(),
            reroute=Reroute(),
            complete_plan=CompletePlan(),
            fall_back_to_text=FallBackToText(),
        )

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

    @property
    def continue_ids(self) -> list[int]:
        """Tokens that go on to another member or item: a comma, after a value's closing quote."""
        if self._continue_ids is None:
            self._continue_ids = [i for i, t in enumerate(self.byte_texts) if re.match(r'^"?\s*,', t)]
        return self._continue_ids

    @torch.no_grad()
    def shared_prefix(self) -> tuple[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]]:
        """The prompt start most requests share (`encoding.template_prefix`: the chat
        template's system prompt and header) and its key/values per layer, computed once
        (the backbone is frozen; the prefix holds no memory token, so no bank enters it)."""
        if self._prefix is None:
            ids = tuple(template_prefix(self.backbone.tokenizer))
            layers: list[tuple[torch.Tensor, torch.Tensor]] = []
            if ids:
                body = memory.decoder(self.backbone)
                out = body(
                    inputs_embeds=memory.embed(
                        self.backbone, self.bank.rows.detach(), torch.tensor([ids]).to(self.backbone.device)
                    ),
                    use_cache=True,
                    **cache_argument(body, DynamicCache(config=self.backbone.model.config)),
                )
                layers = [(layer.keys, layer.values) for layer in returned_cache(out).layers]
            self._prefix = (ids, layers)
        return self._prefix

    @torch.no_grad()
    def memory_scores(self, prompt: Sequence[int], view: BankView) -> torch.Tensor:
        """The memory rows' scores (one per row of ``view``) after ``prompt``: one forward
        pass, no cache kept (``route_by_last_turn`` routes a plan's first call by them)."""
        rows = view.rows
        ids = torch.tensor([list(prompt)]).to(self.backbone.device)
        hidden = memory.decoder(self.backbone)(inputs_embeds=memory.embed(self.backbone, rows, ids)).last_hidden_state
        return memory.logits(self.backbone, rows, hidden[0, -1:])[0, self.backbone.vocab_size :].float()

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

    def policies(self, settings: DecodeSettings) -> Policies:
        """The call-level levers ``settings`` turn on."""
        return Policies.assemble(settings, self.levers)

    @torch.no_grad()
    def decode(
        self,
        prompts: Sequence[Sequence[int]],
        settings: DecodeSettings,
        sources: Sequence[str] | None = None,
        resumes_after: Sequence[ToolCall | None] | None = None,
        last_turns: Sequence[Sequence[int] | None] | None = None,
        copy_sources: Sequence[str] | None = None,
    ) -> list[Plan]:
        """Plans a batch of tokenised prompts; one Plan per prompt.

        Args:
            prompts: Token ids of each chat-formatted request.
            settings: Limits and policy.
            sources: Each request's text (everything argument values may be founded in).
            resumes_after: For each prompt that already ends in calls of its plan (an agent
                run resumed, `agentmem.encoding.resumed_prompt_ids`), the last of them: it
                routes as after a call, and a call repeating it ends the plan; else None.
            last_turns: Each request's last user message alone (token ids) where it is a
                conversation, for ``settings.route_by_last_turn``.
            copy_sources: The text each request's ``settings.copy_bias`` favours copying
                from (`agentmem.encoding.copy_source_text`); None: its source.
        """
        with MODEL_LOCK:
            batch = Batch(self)
            rows = batch.add(
                prompts,
                [settings] * len(prompts),
                sources if sources is not None else [""] * len(prompts),
                resumes_after if resumes_after is not None else [None] * len(prompts),
                last_turns=last_turns,
                copy_sources=copy_sources,
            )
            while batch.rows:
                batch.step()
            return [row.plan for row in rows]

    def stop(self, row: Row, finish: str, note: str) -> None:
        """Ends a row before the model does (a time limit, a cancelled request): a call in
        progress becomes an invalid call with ``note`` as its reason; text is kept."""
        if row.mode == "arguments":
            self._finish_call(row, stopped=(note, finish))
        elif row.mode == "text":
            self._finish_text(row, finish)
        else:
            row.plan.finish_reason = finish
            row.mode = "done"
        row.plan.notes.append(note)

    def step(self, row: Row, scores: Scores) -> int | None:
        """Chooses one request's next token from ``scores`` and advances its state.

        Returns:
            The token to feed back, or None when the request needs no further step.
        """
        if row.done:
            return None
        row.generated += 1
        if row.mode == "route":
            kept = self.route_mask.kept(row, self._forced(row))
            token = self._route(row, scores.all() if kept is None else scores.only(kept))
        elif row.mode == "arguments":
            token = self._argument_step(row, scores)
        else:
            token = self._text_step(row, scores.all())
        return None if row.done else token

    def reads_all(self, row: Row) -> list[bool]:
        """For each position the batch steps ``row`` through next (its token fed last, then
        each drafted one, as if the draft is kept): whether that step reads every token's
        score, not only those its mask keeps (`RouteMask.kept`, `ArgumentMatcher.allowed`).
        The batch computes those positions' whole LM head in one product."""
        if row.mode == "arguments" and row.matcher is not None:
            if self._reads_every_argument_score(row):
                return [True] * (1 + len(row.slot.drafted))
            return [ids is None for ids in row.matcher.allowed_ahead(row.slot.drafted)]
        return [row.mode == "text" or self.route_mask.kept(row, self._forced(row)) is None]

    @staticmethod
    def _reads_every_argument_score(row: Row) -> bool:
        """Whether an argument step reads every token's score whatever the grammar allows:
        a call's likelihood (``reroute_unfounded``) does."""
        return row.settings.reroute_unfounded

    def draft(self, row: Row) -> list[int]:
        """The tokens ``row`` will likely write after its last chosen token, to feed with it
        and check on the next step (`agentmem.decoding.drafts`): speed, never the plan."""
        return self.drafter(row)

    def _route(self, row: Row, scores: torch.Tensor) -> int | None:
        # A continued plan (an agent resuming after tool results) is past its first call:
        # no text answer, no forced first call, only the next call or end-of-plan.
        assert row.view is not None
        vocab, eos = self.route_mask.vocab, self.route_mask.eos
        first, forced = row.first, self._forced(row)
        memory_ids = self.route_mask.memory_ids(row, forced)
        candidates = self.route_mask(row, scores, forced)
        token = int(candidates.argmax())
        policies = self.policies(row.settings)
        if policies.fall_back_to_text is not None and first:  # words or a call, from the routing evidence
            token = policies.fall_back_to_text.route(
                candidates, memory_ids, token, lambda: self.text_mask.likeliest_word(scores, self._stops)
            )
        if first and not forced and token >= vocab and row.last_turn is not None:
            # a call, to the tool the last user message alone prefers (route_by_last_turn)
            last_turn = row.last_turn
            token = max(memory_ids, key=lambda i: float(last_turn[i - vocab]))
        if token == eos:
            # Not in a resumed plan: its earlier calls are in the prompt, not in `row.plan`, so
            # a call repeating one of them (an agent's loop) would look new.
            complete = policies.complete_plan
            extension = (
                complete.at_end(row, candidates, memory_ids)
                if complete is not None and row.plan.steps and not row.continued
                else None
            )
            if extension is None:
                row.mode = "done"
                return None
            token, row.complete.extending = extension, True
            self._start_call(row, row.view.names[token - vocab])
            return token
        if token < vocab:  # the model answers in words
            row.mode = "text"
            row.pending = [token]
            return token
        probabilities = torch.softmax(candidates, dim=-1)
        row.reroute.probability = float(probabilities[token])
        row.reroute.tried, row.reroute.alternatives = [], []
        if policies.reroute is not None and not forced:
            policies.reroute.at_route(row, probabilities, memory_ids, token, vocab)
        self._start_call(row, row.view.names[token - vocab])
        return token

    @staticmethod
    def _forced(row: Row) -> bool:
        """Whether the row's routing step must take one tool: a named tool goes first."""
        return row.first and row.settings.tool_choice not in POLICIES

    def _argument_step(self, row: Row, scores: Scores) -> int:
        assert row.matcher is not None
        token, piece = self._argument_token(row, scores)
        row.matcher.accept(token, piece)
        row.pending.append(token)
        row.text += piece
        if row.matcher.is_finished():
            self._finish_call(row)
            if row.feed is not None:  # another tool is tried at the same routing decision
                token, row.feed = row.feed, None
            return token
        policies = self.policies(row.settings)
        repeat = policies.runaway.repeated(row.pending)
        bound = row.settings.max_argument_tokens
        if repeat is not None:
            unit = self.backbone.tokenizer.decode(list(repeat))
            reason = (
                f"arguments stopped after {len(row.pending)} tokens: they kept repeating {unit!r} (a runaway string)"
            )
            self._finish_call(row, stopped=(reason, "repetition"))
            return token
        if len(row.pending) >= bound:
            self._finish_call(row, stopped=(f"arguments did not close within {bound} tokens", "length"))
        return token

    def _argument_token(self, row: Row, scores: Scores) -> tuple[int, str]:
        """The next argument token (and its text): a replayed call's next token, or the
        argmax of the scores through `argument_processors`. Where the grammar allows a few
        tokens, only theirs are computed: the grammar's mask leaves the others -inf anyway."""
        assert row.matcher is not None
        decode = self.backbone.tokenizer.decode
        if row.reroute.replay:  # a call decoded before is written again, token for token
            token = row.reroute.replay.pop(0)
            return token, decode([token])
        few = None if self._reads_every_argument_score(row) else row.matcher.allowed()
        raw = values = scores.all() if few is None else scores.only(few)
        for processor in self.argument_processors:
            values = processor(row, values)
        token = int(values.argmax())
        if row.settings.reroute_unfounded:
            row.reroute.likelihood += float(torch.log_softmax(raw, dim=-1)[token])
        return token, decode([token])

    def _text_step(self, row: Row, scores: torch.Tensor) -> int:
        token = int(self.text_mask(row, scores).argmax())
        if token in self._stops:  # the end of turn (eos) or the tokenizer's own eos
            self._finish_text(row, "stop")
        else:
            row.pending.append(token)
            if len(row.pending) >= row.settings.max_text_tokens:
                self._finish_text(row, "length")
        return token

    def _start_call(self, row: Row, tool: str) -> None:
        """Begins decoding a call's arguments (its memory token is the token fed next)."""
        assert row.view is not None
        row.tool = tool
        spec = row.view.specs[tool]
        compiled = self.grammar.compile(spec.parameters) if row.settings.constrained else self.grammar.unconstrained()
        if compiled.fallback_reason and compiled.fallback_reason not in row.plan.notes:
            row.plan.notes.append(f"{tool}: decoded without grammar ({compiled.fallback_reason})")
        row.matcher = compiled.matcher()
        row.pending, row.text, row.reroute.likelihood = [], "", 0.0
        row.mode = "arguments"

    def _finish_call(self, row: Row, stopped: tuple[str, str] | None = None) -> None:
        """Parses the arguments into a call and applies the policies' verdict on it;
        ``stopped`` = (reason, finish_reason) ends the plan with an invalid call instead (a
        bound was hit, or the text ran away)."""
        assert row.tool is not None
        text = self.backbone.tokenizer.decode(row.pending)
        if (
            stopped is not None and row.complete.extending
        ):  # a call the model would not have made: the plan ends as it chose
            self._apply(row, EndPlan())
            return
        if stopped is not None:
            reason, finish = stopped
            row.plan.steps.append(InvalidToolCall(name=row.tool, raw=text, reason=reason))
            row.plan.finish_reason = finish
            row.mode = "done"
            return
        spec = row.spec
        policies = self.policies(row.settings)
        verdict: Verdict = Keep(parse_call(spec, text), [])
        if policies.strip_leading_space is not None:
            verdict = policies.strip_leading_space.judge(spec, verdict.call)
        if policies.drop_unfounded is not None and row.source:
            dropped = policies.drop_unfounded.judge(spec, verdict.call, row.request)
            verdict = Keep(dropped.call, verdict.notes + dropped.notes)
        call, notes = verdict.call, verdict.notes
        if row.complete.extending:
            assert policies.complete_plan is not None
            verdict = policies.complete_plan.judge(row, spec, call, notes)
        elif policies.reroute is not None and row.source:
            verdict = policies.reroute.judge(row, spec, call, notes)
        self._apply(row, verdict, policies)

    def _apply(self, row: Row, verdict: Verdict, policies: Policies | None = None) -> None:
        """Carries out a policy's verdict on the call just finished."""
        if isinstance(verdict, TryTool):  # a Replay too
            self._take_back(row, verdict.tool)
            if isinstance(verdict, Replay):
                row.reroute.replay = list(verdict.tokens)
        elif isinstance(verdict, EndPlan):
            row.complete.extending, row.tool, row.matcher, row.pending = False, None, None, []
            if verdict.note is not None:
                row.plan.notes.append(verdict.note)
            row.mode = "done"
        else:
            assert policies is not None
            self._keep(row, verdict, policies)

    def _keep(self, row: Row, verdict: Keep, policies: Policies) -> None:
        """Adds a kept call to the plan, unless it repeats the previous one; routes next."""
        call = verdict.call
        row.complete.extending = False
        row.plan.notes.extend(verdict.notes)
        row.tool, row.matcher, row.pending = None, None, []
        repeat = policies.repeat.judge(row, call)
        if repeat is not None:
            self._apply(row, repeat)
            return
        row.plan.steps.append(call)
        if len(row.plan.steps) >= row.settings.max_calls:
            row.plan.finish_reason = "max_calls"
            row.mode = "done"
        else:
            row.mode = "route"

    def _take_back(self, row: Row, tool: str) -> None:
        """Returns the row to its last routing decision and starts ``tool``'s call there."""
        assert row.view is not None
        # the memory token and every argument token but the last (chosen, never fed) are in the cache
        row.slot.rewind = len(row.pending)
        row.feed = row.view.names.index(tool) + self.backbone.vocab_size
        self._start_call(row, tool)

    def _finish_text(self, row: Row, reason: str) -> None:
        row.plan.text = self.backbone.tokenizer.decode(row.pending, skip_special_tokens=True).strip()
        row.plan.finish_reason = reason
        row.mode = "done"
