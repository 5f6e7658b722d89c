"""``Zfs.concurrently``: independent zfs commands at the same time (a mixin of ``Zfs``).

Every zfs process costs tenths of a second where the CPU is slow (an emulated
one), the pool busy or the host remote; reads that do not depend on each other
need not wait for each other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

if TYPE_CHECKING:
    from .runner import Runner
    from .ssh import SshTarget

__all__ = ["MAX_CONCURRENT", "ConcurrentMethods"]

# Reads ``concurrently`` runs at once at most: beyond a few, processes only compete.
MAX_CONCURRENT = 4
A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")


class ConcurrentMethods:
    """Running several reads (or order-free changes) of a ``Zfs`` at once."""

    if TYPE_CHECKING:
        runner: Runner
        remote: SshTarget | None

        def connect(self) -> None: ...

    @overload
    def concurrently(self, first: Callable[[], A], second: Callable[[], B], /) -> tuple[A, B]:
        ...

    @overload
    def concurrently(self, first: Callable[[], A], second: Callable[[], B],
                     third: Callable[[], C], /) -> tuple[A, B, C]: ...

    @overload
    def concurrently(self, *reads: Callable[[], A]) -> tuple[A, ...]: ...

    def concurrently(self, *reads: Callable[[], Any]) -> tuple[Any, ...]:
        """Run independent reads at the same time; return their results in order.

        Each read is a function calling this ``Zfs`` (a ``get``, a ``pool_get``).  With
        the runner that starts processes, each runs in a thread of its own, so their
        zfs processes overlap: one round trip instead of several where every process
        costs tenths of a second (a slow CPU, an emulated one, a remote host).  Any
        other runner (``encroot.zfs.testing``'s, a test's fake) gets them one after
        the other, in order, so what it records or injects stays deterministic.  Use
        it for reads, and for changes only where either order, and either one alone
        (an interruption), leaves a state the operation's recovery handles; the caller
        says why.

        Raises:
            Whatever the first failing read (in the order given) raised, after all ended.
        """
        results: list[Any] = [None] * len(reads)
        errors: list[Exception | None] = [None] * len(reads)

        def run(index: int) -> None:
            try:
                results[index] = reads[index]()
            except Exception as exc:  # re-raised below, in order
                errors[index] = exc

        if getattr(self.runner, "concurrent", False) and len(reads) > 1:
            if self.remote is not None:
                self.connect()  # one master connection, opened before the threads share it
            workers = min(len(reads), MAX_CONCURRENT)
            pending = iter(range(workers, len(reads)))  # each worker starts with its own
            lock = threading.Lock()

            def work(first: int) -> None:
                index: int | None = first
                while index is not None:
                    run(index)
                    with lock:
                        index = next(pending, None)

            threads = [threading.Thread(target=work, args=(k,)) for k in range(1, workers)]
            for thread in threads:
                thread.start()
            work(0)
            for thread in threads:
                thread.join()
        else:
            for index in range(len(reads)):
                run(index)
        for error in errors:
            if error is not None:
                raise error
        return tuple(results)
