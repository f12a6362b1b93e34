"""A reentrant lock that goes to waiting threads in the order they asked for it.

`MODEL_LOCK` guards the model, the tokenizer and the banks. The scheduler's worker takes it
for one decoding step at a time and asks for it again at once; with `threading.RLock` the
thread that releases a lock usually takes it back before a waiting thread wakes up, so a
request arriving at the server (which needs the lock to tokenise its prompt) could wait
behind dozens of steps of a long answer (head-of-line: 8-10x its time alone on the serving
bench). `FairLock` hands the lock to the longest-waiting thread instead, so the worker's next
step waits for that request's few milliseconds.
"""

from __future__ import annotations

import functools
import threading
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any


class FairLock:
    """A reentrant, first-come first-served lock (a drop-in for `threading.RLock` as a
    context manager, and for ``acquire``/``release``)."""

    def __init__(self) -> None:
        self._state = threading.Condition(threading.Lock())
        self._owner: int | None = None
        self._depth = 0
        self._queue: deque[int] = deque()  # waiting threads, first come first

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Takes the lock (again, if this thread holds it); waits behind earlier askers.

        Returns:
            Whether the lock was taken (False only when not ``blocking`` or on timeout).
        """
        me = threading.get_ident()
        with self._state:
            if self._owner == me:
                self._depth += 1
                return True
            if self._owner is None and not self._queue:
                self._owner, self._depth = me, 1
                return True
            if not blocking:
                return False
            self._queue.append(me)
            turn = self._state.wait_for(
                lambda: self._owner is None and self._queue[0] == me, None if timeout < 0 else timeout
            )
            if not turn:  # gave up: the threads behind move up
                self._queue.remove(me)
                self._state.notify_all()
                return False
            self._queue.popleft()
            self._owner, self._depth = me, 1
            return True

    def release(self) -> None:
        """Releases one level; the last one hands the lock to the first waiting thread.

        Raises:
            RuntimeError: This thread does not hold the lock.
        """
        with self._state:
            if self._owner != threading.get_ident():
                raise RuntimeError("cannot release a lock this thread does not hold")
            self._depth -= 1
            if not self._depth:
                self._owner = None
                self._state.notify_all()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()


__all__ = ["FairLock"]


def locked(method: Callable[..., Any]) -> Callable[..., Any]:
    """Runs a method under its object's ``lock`` (`AgentMem.lock`): the bank must not change under a decode."""

    @functools.wraps(method)
    def locked(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return method(self, *args, **kwargs)

    return locked
