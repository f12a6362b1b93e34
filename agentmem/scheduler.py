"""Continuous batching: concurrent requests decode in one batch, joining it as it runs.

`Scheduler.submit` queues a tokenised request and returns a `concurrent.futures.Future` of
its Plan. One worker thread per scheduler loops over step boundaries: it stops the rows
whose request was cancelled (``future.cancel()``, e.g. a client that went away) or whose
time limit passed, admits waiting requests into the running `Batch`, runs one step (the
joining rows' prompts are prefilled in the same forward pass as the running rows' next
tokens), and resolves the futures of rows that finished. A short request thus starts at the
next step even while a long one decodes (no head-of-line stall), and a batch of 16 costs
far less than 16 single decodes.

Grouping: one scheduler per `Decoder`, i.e. per bank. Requests with different options
(``tool_choice``, ``tools``, limits, copy bias) share a batch: options only steer each row's
choice of token, never the forward pass. Banks differ in the forward pass itself (memory
rows spliced into the input, appended to the logits), so two banks on one backbone run two
schedulers; their workers take `MODEL_LOCK` one step at a time and so take turns, as do
`AgentMem.plan` and learning calls. A bank changed while rows decode (a tool learned or
forgotten) keeps the running rows on the bank they began with; new rows wait for that batch
to drain, then start a batch on the new bank.

The queue is bounded: `submit` raises `OverloadedError` (with a ``retry_after`` estimate)
when ``max_queue`` requests already wait. A request's time limit counts from `submit`: one
still waiting when it passes fails with `OverloadedError`; one decoding is stopped with
``finish_reason="time_limit"``, keeping the calls made so far.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field

from agentmem.decoding import MODEL_LOCK, Batch, Decoder, DecodeSettings, Row
from agentmem.errors import OverloadedError
from agentmem.tools.calls import Plan, ToolCall

__all__ = ["Scheduler"]

#: A worker idle this long ends (a new one starts with the next request).
_IDLE_SECONDS = 30.0


@dataclass
class _Job:
    """One request: queued, then a row of the batch."""

    prompt: Sequence[int]
    settings: DecodeSettings
    source: str
    copy_source: str | None  # for copy_bias (`Batch.add`); None: the source
    resumes_after: ToolCall | None
    last_turn: Sequence[int] | None  # for route_by_last_turn (`Batch.add`)
    future: Future[Plan]
    submitted: float
    deadline: float | None
    time_limit: float | None
    row: Row | None = field(default=None)


class Scheduler:
    """Plans concurrent requests of one decoder in a shared, continuously refilled batch.

    Args:
        decoder: The bank's decoder.
        max_batch: Most rows decoding at once (more wait in the queue). 16 rows of the
            default backbone cost about as much per step as a few single rows on a CPU.
        max_queue: Most requests waiting to join; `submit` refuses more.

    Attributes:
        steps: Forward steps run so far (each decodes one token of every row).
        tokens: Tokens decoded so far, over all rows.
    """

    def __init__(self, decoder: Decoder, *, max_batch: int = 16, max_queue: int = 64) -> None:
        if max_batch < 1 or max_queue < 0:
            raise ValueError(f"max_batch must be >= 1 and max_queue >= 0, got {max_batch} and {max_queue}")
        self.decoder = decoder
        self.max_batch, self.max_queue = max_batch, max_queue
        self.steps, self.tokens = 0, 0
        self._waiting: deque[_Job] = deque()
        self._running: list[_Job] = []
        self._batch: Batch | None = None
        self._wake = threading.Condition()
        self._worker: threading.Thread | None = None
        self._seconds = 1.0  # a running mean of a request's seconds, for Retry-After

    def submit(
        self,
        prompt: Sequence[int],
        settings: DecodeSettings,
        *,
        source: str = "",
        resumes_after: ToolCall | None = None,
        time_limit: float | None = None,
        last_turn: Sequence[int] | None = None,
        copy_source: str | None = None,
    ) -> Future[Plan]:
        """Queues a request; its Plan arrives in the returned future.

        Args:
            prompt: The request's token ids (`AgentMem.submit` makes them).
            settings: Limits and policy (checked when the request joins the batch).
            source: The request's text, for copy-aware decoding.
            resumes_after: The call the prompt resumes a plan in progress after, or None.
            time_limit: Seconds from now within which the plan must be made.
            last_turn: The request's last user message alone (`encoding.last_turn_ids`),
                for ``route_by_last_turn``.
            copy_source: The text ``copy_bias`` favours copying from
                (`encoding.copy_source_text`); None: ``source``.

        Returns:
            A future of the Plan; ``future.cancel()`` stops its decoding at the next step.

        Raises:
            OverloadedError: ``max_queue`` requests already wait.
        """
        if time_limit is not None and time_limit <= 0:
            raise ValueError(f"time_limit must be > 0 seconds, got {time_limit}")
        now = time.perf_counter()
        job = _Job(
            prompt=list(prompt),
            settings=settings,
            source=source,
            copy_source=copy_source,
            resumes_after=resumes_after,
            last_turn=last_turn,
            future=Future(),
            submitted=now,
            deadline=None if time_limit is None else now + time_limit,
            time_limit=time_limit,
        )
        with self._wake:
            if len(self._waiting) >= self.max_queue:
                raise OverloadedError(
                    f"{len(self._waiting)} requests already wait for this bank (the queue holds "
                    f"{self.max_queue}, besides the {self.max_batch} decoding); retry later",
                    retry_after=self.retry_after(),
                )
            self._waiting.append(job)
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="agentmem-scheduler", daemon=True)
                self._worker.start()
            self._wake.notify()
        return job.future

    def retry_after(self) -> int:
        """Whole seconds after which a refused request may find room: the queue ahead,
        ``max_batch`` at a time, at the mean seconds of a request."""
        rounds = 1 + len(self._waiting) // self.max_batch
        return max(1, math.ceil(rounds * self._seconds))

    @property
    def waiting(self) -> int:
        """Requests queued, not yet decoding."""
        return len(self._waiting)

    @property
    def running(self) -> int:
        """Requests decoding."""
        return len(self._running)

    # the worker

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._waiting and not self._running:
                    if not self._wake.wait(_IDLE_SECONDS) and not self._waiting:
                        self._worker = None  # the next submit starts another
                        return
            with MODEL_LOCK:  # one step at a time: other banks and learning calls go in between
                try:
                    self._iterate()
                except Exception as exc:  # a failure fails the batch's requests, never the worker
                    self._fail(exc)

    def _iterate(self) -> None:
        """One step boundary: stop, admit, decode one token, resolve."""
        self._stop_rows()
        self._admit()
        if self._batch is None or not self._batch.rows:
            return
        before = len(self._batch.rows)
        finished = self._batch.step()
        self.steps += 1
        self.tokens += before
        self._resolve(finished)

    def _stop_rows(self) -> None:
        """Drops rows whose request was cancelled or ran out of time; fails waiting ones."""
        now = time.perf_counter()
        with self._wake:
            for job in [j for j in self._waiting if j.future.cancelled() or _late(j, now)]:
                self._waiting.remove(job)
                if not job.future.cancelled():
                    _settle(job.future, error=_queued_too_long(job, self.retry_after()))
        if self._batch is None:
            return
        cancelled = [j for j in self._running if j.future.cancelled()]
        late = [j for j in self._running if not j.future.cancelled() and _late(j, now)]
        if cancelled:
            self._batch.stop([j.row for j in cancelled if j.row], "cancelled", "the request was cancelled")
        for job in late:
            note = f"stopped at the time limit of {job.time_limit:g} s"
            self._batch.stop([job.row] if job.row else [], "time_limit", note)
        self._resolve([j.row for j in cancelled + late if j.row])

    def _admit(self) -> None:
        """Moves waiting requests into the batch, as many as it has room for."""
        if self._batch is not None and self._batch.rows and not self.decoder.current(self._batch.view):
            return  # the bank changed: the running rows finish on the old one first
        if self._batch is None or not self._batch.rows:
            self._batch = Batch(self.decoder)
        batch = self._batch
        with self._wake:
            room = self.max_batch - len(batch.rows)
            joining = [self._waiting.popleft() for _ in range(min(room, len(self._waiting)))]
        ready = []
        for job in joining:  # settings are checked against the bank the batch decodes with
            try:
                self.decoder.check(job.settings, batch.view)
                ready.append(job)
            except Exception as exc:
                _settle(job.future, error=exc)
        if not ready:
            return
        rows = batch.add(
            [j.prompt for j in ready],
            [j.settings for j in ready],
            [j.source for j in ready],
            [j.resumes_after for j in ready],
            [j.submitted for j in ready],
            [j.last_turn for j in ready],
            [j.copy_source for j in ready],
        )
        for job, row in zip(ready, rows):
            job.row = row
        self._running += ready

    def _resolve(self, rows: Sequence[Row]) -> None:
        """Hands finished rows' plans to their futures."""
        done = {id(r) for r in rows}
        for job in [j for j in self._running if id(j.row) in done]:
            self._running.remove(job)
            assert job.row is not None
            self._seconds = 0.8 * self._seconds + 0.2 * job.row.plan.timings.get("total", self._seconds)
            if not job.future.cancelled():
                _settle(job.future, plan=job.row.plan)

    def _fail(self, exc: Exception) -> None:
        """The batch failed as a whole (a bug, a device error): its requests get the error."""
        for job in self._running:
            _settle(job.future, error=exc)
        self._running, self._batch = [], None


def _late(job: _Job, now: float) -> bool:
    return job.deadline is not None and now >= job.deadline


def _queued_too_long(job: _Job, retry_after: int) -> OverloadedError:
    return OverloadedError(
        f"the request waited its whole time limit of {job.time_limit:g} s in the queue: the server is busy; "
        "retry later",
        retry_after=retry_after,
    )


def _settle(future: Future[Plan], *, plan: Plan | None = None, error: BaseException | None = None) -> None:
    """Sets a future's outcome unless it was cancelled meanwhile (then nobody waits for it)."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(plan)  # type: ignore[arg-type]
    except InvalidStateError:
        pass
