"""Zfs.concurrently: reads at once with the process runner, in order with test runners."""

from __future__ import annotations

import pytest

from encroot.errors import DatasetNotFound
from encroot.zfs import Command

from .fakes import FakeDatasets, make_zfs


class _ConcurrentRunner:
    """A runner that says it may run from several threads, and shows that it did."""

    concurrent = True

    def __init__(self) -> None:
        import threading

        self.threads: set[int] = set()
        self.together = threading.Barrier(2, timeout=10)

    def run(self, command: Command, **_: object) -> object:
        import threading

        from encroot.zfs.runner import Result

        self.threads.add(threading.get_ident())
        self.together.wait()  # both reads must be running at once to pass this
        return Result(command, 0, f"{command.argv[-1]}\tmounted\tyes\t-\n", "")


def test_concurrently_runs_reads_at_the_same_time_with_a_concurrent_runner() -> None:
    from encroot.zfs import Zfs
    from encroot.zfs.runner import Binaries

    runner = _ConcurrentRunner()
    zfs = Zfs(runner=runner, binaries=Binaries(zfs="/sbin/zfs", zpool="/sbin/zpool"))  # type: ignore[arg-type]
    first, second = zfs.concurrently(lambda: zfs.get(["p/a"], ["mounted"], use_json=False),
                                     lambda: zfs.get(["p/b"], ["mounted"], use_json=False))
    assert len(runner.threads) == 2
    assert list(first) == ["p/a"] and list(second) == ["p/b"]


def test_concurrently_runs_in_order_with_a_recording_runner() -> None:
    zfs, runner = make_zfs(FakeDatasets({"p/a": {"mounted": "yes"}, "p/b": {"mounted": "no"}}))
    zfs.concurrently(lambda: zfs.get(["p/b"], ["mounted"], use_json=False),
                     lambda: zfs.get(["p/a"], ["mounted"], use_json=False))
    assert [command.argv[-1] for command, _ in runner.calls] == ["p/b", "p/a"]


def test_concurrently_raises_the_first_failure_in_order_after_all_ended() -> None:
    zfs, _ = make_zfs(FakeDatasets({"p/a": {"mounted": "yes"}}))
    finished = []

    def missing() -> object:
        return zfs.get(["p/none"], ["mounted"], use_json=False)

    def present() -> object:
        finished.append(True)
        return zfs.get(["p/a"], ["mounted"], use_json=False)

    with pytest.raises(DatasetNotFound):
        zfs.concurrently(missing, present)
    assert finished == [True]


def test_concurrently_runs_many_reads_on_a_few_threads_and_keeps_their_order() -> None:
    import threading

    from encroot.zfs import Zfs
    from encroot.zfs.concurrent import MAX_CONCURRENT
    from encroot.zfs.testing import RecordingRunner

    class Threaded(RecordingRunner):
        concurrent = True

    zfs = Zfs(runner=Threaded(), binaries=make_zfs()[0].binaries)
    seen: set[int] = set()

    def read(number: int) -> int:
        seen.add(threading.get_ident())
        return number * number

    results = zfs.concurrently(*(lambda n=n: read(n) for n in range(10)))
    assert results == tuple(n * n for n in range(10))
    assert 1 < len(seen) <= MAX_CONCURRENT
