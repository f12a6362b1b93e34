"""The batch: rows decoding together over one packed key/value cache, joining and leaving at step boundaries.

Every step is one forward pass over a packed sequence (`agentmem.packing`) that feeds each
decoding row's next token and the joining rows' prompts (chunked, from where the shared
prompt prefix ends); a row that finishes (or is stopped) leaves at once. A row taken back
to an earlier decision (a call rerouted) has its last tokens taken out of the cache first.
The LM head is computed as far as each step reads it (`Scores`): the whole vocabulary's
scores in one product for the positions that need them, a few columns for the others.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

import torch

from agentmem import memory
from agentmem.backbone import Backbone, cache_argument
from agentmem.decoding.settings import DecodeSettings
from agentmem.decoding.state import BankView, Clock, Row, Slot
from agentmem.locking import FairLock
from agentmem.packing import PackedCache
from agentmem.tools.calls import ToolCall

#: One model call at a time in a process, whichever bank or front end makes it: banks share
#: backbones, backbones share tokenizers (an adapted backbone keeps its base's), a fast
#: tokenizer is not thread-safe, and two decodes on one device only compete for it.
MODEL_LOCK = FairLock()  # first come first served, so a step loop cannot starve a request


class Machine(Protocol):
    """What a batch needs of its decoder (`agentmem.decoding.Decoder`)."""

    backbone: Backbone

    def view(self) -> BankView: ...

    def check(self, settings: DecodeSettings, view: BankView | None = None) -> list[int]: ...

    def shared_prefix(self) -> tuple[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]]: ...

    def reads_all(self, row: Row) -> list[bool]: ...

    def step(self, row: Row, scores: Scores) -> int | None: ...

    def draft(self, row: Row) -> list[int]: ...

    def stop(self, row: Row, finish: str, note: str) -> None: ...

    def memory_scores(self, prompt: Sequence[int], view: BankView) -> torch.Tensor: ...


class Scores:
    """One position's scores (the vocabulary's, then the memory tokens'), computed as far as
    the decoder's step there reads them.

    The LM head is a tenth of a forward pass on a CPU (49,152 x 576 on the default
    backbone), and most steps read a few of its columns: the tokens the grammar allows
    inside arguments (a key, punctuation, an enum value), end-of-plan and the memory tokens
    when routing after a call. The batch computes every column in one product for the
    positions whose steps it expects to read them all (`Batch.step`); the others' columns are
    computed when the step asks (`only`), so a wrong guess costs time, never the plan.
    """

    def __init__(self, backbone: Backbone, rows: torch.Tensor, hidden: torch.Tensor, full: torch.Tensor | None) -> None:
        self.backbone, self.rows, self.hidden = backbone, rows, hidden
        self._full = full

    def all(self) -> torch.Tensor:
        """Every column's score (1-D, float32)."""
        if self._full is None:
            self._full = memory.logits(self.backbone, self.rows, self.hidden[None]).float()[0]
        return self._full

    def only(self, ids: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """The scores of ``ids``, every other column -inf (1-D, the full width, float32): what a
        mask keeping ``ids`` makes of `all`."""
        ids = torch.as_tensor(ids, dtype=torch.long).to(self.hidden.device)
        out = torch.full((self.backbone.vocab_size + len(self.rows),), float("-inf"), device=self.hidden.device)
        if self._full is not None:
            out[ids] = self._full[ids]
        else:
            out[ids] = memory.logits_at(self.backbone, self.rows, self.hidden, ids).float()
        return out


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
    holds `MODEL_LOCK` around each call (the tokenizer and the model are shared). Its calls
    run in inference mode, not only without gradients: the same kernels, none of autograd's
    bookkeeping (version counters, views) on the body's thousand operations a pass, about a
    tenth of a single row's pass on a CPU. The tensors made there (the cache, the scores, the
    decoder's shared prefix) are only used in a batch's calls: an inference tensor may change
    only in inference mode, and never takes part in a gradient.

    Attributes:
        rows: The rows in the batch (prefilling or decoding), in the order they joined.
        steps: Forward steps run.
    """

    def __init__(self, decoder: Machine, *, prefill_tokens: int = 256) -> None:
        if prefill_tokens < 1:
            raise ValueError(f"prefill_tokens must be >= 1, got {prefill_tokens}")
        self.decoder = decoder
        self.view = decoder.view()
        self.rows: list[Row] = []
        self.steps = 0
        self.prefill_tokens = prefill_tokens
        self._cache: PackedCache | None = None
        self._prefix: tuple[int, ...] = ()
        self._owners = 0  # the last owner id given to a row

    @torch.inference_mode()
    def add(
        self,
        prompts: Sequence[Sequence[int]],
        settings: Sequence[DecodeSettings],
        sources: Sequence[str],
        resumes_after: Sequence[ToolCall | None],
        submitted: Sequence[float] | None = None,
        last_turns: Sequence[Sequence[int] | None] | None = None,
        copy_sources: Sequence[str | None] | None = None,
    ) -> list[Row]:
        """Adds prompts to the batch; they are prefilled by the next steps. Returns their rows.

        ``resumes_after``: for each prompt that resumes an agent run's plan, the call it ends
        in (`agentmem.encoding.resumed_prompt_ids`), else None.

        ``last_turns``: each request's last user message alone (token ids), or None; the
        memory rows' scores after it route the plan's first call where its settings turn
        ``route_by_last_turn`` on (`Decoder.memory_scores`).

        ``copy_sources``: the text each request's ``copy_bias`` favours copying from
        (`agentmem.encoding.copy_source_text`); None (all, or one): its source (`Row.copied`).

        Raises:
            UnknownToolError: A setting names a tool the batch's bank lacks (nothing is added).
        """
        allowed = [self.decoder.check(s, self.view) for s in settings]
        if self._cache is None and prompts:
            self._start()
        started = time.perf_counter()
        rows = []
        copied = copy_sources if copy_sources is not None else [None] * len(prompts)
        for i, (p, s, a, t, c) in enumerate(zip(prompts, settings, allowed, sources, resumes_after)):
            shared = len(self._prefix) < len(p) and tuple(p[: len(self._prefix)]) == self._prefix
            self._owners += 1
            last = last_turns[i] if last_turns is not None and s.route_by_last_turn and c is None else None
            copy_source = copied[i]
            rows.append(
                Row(
                    prompt_tokens=len(p),
                    settings=s,
                    allowed=a,
                    view=self.view,
                    source=t.encode("utf-8").decode("latin-1"),
                    copy_source=None if copy_source is None else copy_source.encode("utf-8").decode("latin-1"),
                    resumes_after=c,
                    last_turn=self.decoder.memory_scores(last, self.view) if last else None,
                    mode="text" if s.tool_choice == "none" else "route",
                    slot=Slot(
                        owner=self._owners,
                        shared=shared,
                        unfed=list(p[len(self._prefix) :] if shared else p),
                        position=len(self._prefix) if shared else 0,
                    ),
                    clock=Clock(submitted=started if submitted is None else submitted[i], started=started),
                )
            )
        self.rows += rows
        return rows

    @torch.inference_mode()
    def step(self) -> list[Row]:
        """Chooses the next token of every decoding row (first going through the tokens it
        drafted, `agentmem.decoding.drafts`), then runs one forward pass over those tokens,
        the rows' new drafts and the next prompt tokens of the rows prefilling; returns the
        rows that finished (and left the batch)."""
        if not self.rows:
            return []
        decoding = [row for row in self.rows if row.slot.hidden is not None]
        finished = []
        if decoding:
            hidden = torch.cat([row.slot.hidden for row in decoding])  # type: ignore[misc]
            scores = self._scores(hidden, [whole for row in decoding for whole in self.decoder.reads_all(row)])
            start = 0
            for row in decoding:
                count = len(row.slot.hidden)  # type: ignore[arg-type]
                token = self._choose(row, scores[start : start + count])
                start += count
                if token is None:
                    finished.append(row)
                    continue
                slot = row.slot
                if slot.rewind:
                    # Taken back (a call rerouted, or drafted tokens not chosen): the row's
                    # last tokens leave the cache, and its next token takes the position of
                    # the first of them.
                    assert self._cache is not None
                    self._cache.take_back(slot.owner, slot.rewind)
                    slot.position -= slot.rewind
                    slot.rewind = 0
                slot.drafted = self.decoder.draft(row)
                slot.unfed = [token, *slot.drafted]
            self._drop(finished)
        if self.rows:
            self._forward()
        return finished

    def _choose(self, row: Row, scores: Sequence[Scores]) -> int | None:
        """The row's next token to feed, or None when it is done: the decoder steps through
        ``scores`` (one row per token fed last: that token, then each drafted one) while the
        token it chooses is the drafted one already in the cache; the drafted tokens after
        the first one it does not choose are marked to leave the cache (``slot.rewind``)."""
        slot = row.slot
        drafted = slot.drafted
        for i, position in enumerate(scores):
            token = self.decoder.step(row, position)
            if token is None:
                return None
            if i < len(drafted) and token == drafted[i] and not slot.rewind:
                continue  # the drafted token, already fed: the next scores follow it
            slot.rewind += len(drafted) - i  # the drafted tokens not chosen
            break
        slot.drafted = []
        return token

    def _scores(self, hidden: torch.Tensor, whole: Sequence[bool]) -> list[Scores]:
        """Each position's `Scores`: every column of those whose step is expected to read
        them all (``whole``, `Decoder.reads_all`) in one product, the rest left to their steps."""
        backbone, rows = self.decoder.backbone, self.view.rows
        index = [i for i, w in enumerate(whole) if w]
        full = iter(memory.logits(backbone, rows, hidden[index]).float() if index else ())
        return [Scores(backbone, rows, h, next(full) if w else None) for h, w in zip(hidden, whole)]

    @torch.inference_mode()  # the cache's tensors are inference tensors (`Batch`)
    def stop(self, rows: Sequence[Row], finish: str, note: str) -> None:
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
        # rows whose next token the pass predicts, and from which of its tokens on
        last: list[tuple[Slot, Row, int]] = []
        for row in self.rows:
            slot = row.slot
            prefilling = slot.hidden is None
            count = min(len(slot.unfed), budget) if prefilling else len(slot.unfed)
            if not count:
                continue
            if prefilling:
                budget -= count
            else:
                slot.passes += 1
            ids += slot.unfed[:count]
            owners += [slot.owner] * count
            positions += range(slot.position, slot.position + count)
            shared += [slot.shared] * count
            slot.unfed, slot.position = slot.unfed[count:], slot.position + count
            if not slot.unfed:
                # a decoding row's drafted tokens each need their hidden state too
                last.append((slot, row, len(ids) - (1 if prefilling else count)))
        mask = self._cache.append(
            torch.tensor(owners, dtype=torch.long), torch.tensor(positions, dtype=torch.long), torch.tensor(shared)
        )
        device = backbone.device
        body = memory.decoder(backbone)
        out = body(
            inputs_embeds=memory.embed(backbone, self.view.rows, torch.tensor([ids], dtype=torch.long).to(device)),
            attention_mask=mask,
            position_ids=torch.tensor([positions], dtype=torch.long).to(device),
            use_cache=True,
            **cache_argument(body, self._cache),
        )
        hidden = out.last_hidden_state[0]
        now = time.perf_counter()
        for slot, row, index in last:
            if slot.hidden is None:
                row.clock.prefilled = now
            end = index + 1 + len(slot.drafted)
            slot.hidden = hidden[index:end]
        self.steps += 1

    def _drop(self, rows: Sequence[Row]) -> list[Row]:
        """Removes rows (done ones) from the batch; stamps their usage and timings."""
        if not rows:
            return []
        gone = {id(row) for row in rows}
        dropped = [row for row in self.rows if id(row) in gone]
        self.rows = [row for row in self.rows if id(row) not in gone]
        if self._cache is not None:
            self._cache.release([row.slot.owner for row in dropped])
        finished = time.perf_counter()
        for row in dropped:
            row.slot.hidden, row.slot.unfed, row.slot.drafted = None, [], []
            clock = row.clock
            prefilled = clock.prefilled or finished  # a row stopped before its prompt was in
            row.plan.usage = {
                "prompt_tokens": row.prompt_tokens,
                "generated_tokens": row.generated,
                "decode_passes": row.slot.passes,  # fewer than the tokens where drafts were kept
            }
            row.plan.timings = {
                "prefill": prefilled - clock.started,
                "decode": finished - prefilled,
                "total": finished - clock.submitted,
            }
            if clock.started > clock.submitted:
                row.plan.timings["queue"] = clock.started - clock.submitted
        return dropped
