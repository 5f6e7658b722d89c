"""What a migration phase reads, and that fewer reads check as much (issue 12, performance).

On one host SRC's goal snapshot is read with DST after the transfers (one ``zfs get``
of both trees): the check of every GUID still compares what ZFS shows on both sides
after the receive, never the stand-ins the transfers were planned with.
"""

from __future__ import annotations

import pytest

from encroot.migrate import VerificationFailed
from encroot.migrate.read import read_sides

from .fakes import make_zfs
from .migrating import MigratingWorld, dataset, snapshot
from .test_migrate_commands import _fixed, request, run_migrate, world


@pytest.fixture(autouse=True)
def _fixed_owner_clock_and_names(monkeypatch: pytest.MonkeyPatch) -> None:
    _fixed(monkeypatch)


class WrongGuidWorld(MigratingWorld):
    """Lands every stream, then gives the staging's @s1 another GUID."""

    def _land(self, target: str) -> None:
        super()._land(target)
        self.datasets[f"{target}@s1"]["guid"] = "666"


def test_a_snapshot_received_with_another_guid_fails_the_phase() -> None:
    """The goal matched by its real GUID (read after the receive; its stand-in would
    have asked for the stream again), @s1 did not: the phase fails on it."""
    fake = world()
    wrong = WrongGuidWorld(fake.datasets, local=fake.local)
    with pytest.raises(VerificationFailed, match=r"^after the transfers: "
                       r"dst/encroot-migrate: missing @s1$"):
        run_migrate(wrong, request("initial"))


def test_src_is_read_with_dst_after_the_receive_in_one_zfs_get() -> None:
    fake = world()
    runner = run_migrate(fake, request("initial"))
    lines = [command.shell_line() for command, _ in runner.calls]
    receive = next(i for i, line in enumerate(lines) if " receive " in line)
    both = [i for i, line in enumerate(lines) if line.endswith(" src dst")]
    assert both and both[0] > receive
    snapshot_taken = next(i for i, line in enumerate(lines) if " snapshot " in line)
    assert not any(line.endswith(" src") and " get " in line
                   for line in lines[snapshot_taken:])


def test_read_sides_splits_one_zfs_get_by_root() -> None:
    fake = MigratingWorld({"src": dataset(guid="1"), "src@a": snapshot(7, 3),
                           "src2": dataset(guid="2"), "dst": dataset(guid="3")})
    zfs, runner = make_zfs(fake)
    source, destination = read_sides(zfs, ["src", "dst"])
    assert len(runner.calls) == 1
    assert set(source.nodes) == {"src"} and source.nodes["src"].snapshots[0].guid == "7"
    assert set(destination.nodes) == {"dst"}
    gone, destination = read_sides(zfs, ["nope", "dst"])  # one missing: each alone
    assert gone.nodes == {} and set(destination.nodes) == {"dst"}
