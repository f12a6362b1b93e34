"""FairLock: reentrant, and handed to waiting threads in the order they asked."""

from __future__ import annotations

import threading
import time

import pytest

from agentmem.locking import FairLock


def test_it_is_reentrant_and_only_its_owner_releases_it():
    lock = FairLock()
    with lock, lock:  # the same thread again
        errors = []
        thread = threading.Thread(target=lambda: errors.append(lock.acquire(blocking=False)))
        thread.start()
        thread.join()
        assert errors == [False]  # held by another thread
    with pytest.raises(RuntimeError, match="does not hold"):
        lock.release()
    assert lock.acquire(timeout=0.1)
    lock.release()


def test_a_thread_that_takes_it_back_at_once_waits_behind_one_already_waiting():
    # The scheduler's worker releases the lock after a step and asks again at once; a request
    # waiting to tokenise its prompt must get it first (an RLock mostly went to the worker).
    lock, order, asked = FairLock(), [], threading.Event()

    def waiter() -> None:
        asked.set()
        with lock:
            order.append("waiter")

    def worker() -> None:
        for step in range(50):
            with lock:
                order.append(step)
                if step == 0:
                    threading.Thread(target=waiter).start()
                    asked.wait()
                    time.sleep(0.05)  # the waiter is now queued on the lock

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    time.sleep(0.05)
    assert order.index("waiter") == 1  # right after the step during which it asked


def test_a_waiter_that_times_out_leaves_the_queue():
    lock = FairLock()
    lock.acquire()
    results = []
    thread = threading.Thread(target=lambda: results.append(lock.acquire(timeout=0.05)))
    thread.start()
    thread.join()
    lock.release()
    assert results == [False]
    assert lock.acquire(blocking=False)  # nobody left in front
    lock.release()
