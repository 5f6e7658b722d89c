"""What a migration phase reads, and that fewer reads check as much (issue 12, performance).

On one host SRC's goal snapshot is read with DST after the transfers (one ``zfs get``
of both trees): the check of every GUID still compares what ZFS shows on both sides
after the receive, never the stand-ins the transfers were planned with.
"""

from __future__ import annotations

import pytest

from encroot.errors import ZfsError
from encroot.keys import Key
from encroot.migrate import MigrateState, VerificationFailed, migrate
from encroot.migrate.read import read_side, read_sides, refresh_destination
from encroot.owned import MIGRATE_MARKER

from .fakes import make_zfs
from .migrating import MigratingWorld, dataset, snapshot
from .test_migrate_commands import HEX, _fixed, request, run_migrate, sides, world


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


def test_one_command_hands_dst_s_marker_to_cutover_without_reading_the_trees_again() -> None:
    """Between the initial phase's verifying read and cutover's goal snapshot: SRC root's
    local properties alone, and one claim; the only inherit of the marker is the last."""
    runner = run_migrate(world(), request())
    lines = [command.shell_line() for command, _ in runner.calls]
    verified = next(i for i, line in enumerate(lines) if line.endswith(" src dst"))
    second_goal = [i for i, line in enumerate(lines) if " snapshot -r " in line][1]
    between = lines[verified + 1:second_goal]
    assert len(between) == 2, between
    assert between[0].endswith("get -p -H -o name,property,value,source -s local all src")
    assert " program " in between[1]
    inherits = [i for i, line in enumerate(lines) if f"inherit {MIGRATE_MARKER} dst" in line]
    assert inherits == [len(lines) - 1]


def test_a_cutover_that_fails_after_the_handover_releases_the_marker() -> None:
    """Cutover's goal snapshot fails (the 2nd snapshot command, after its claim): the
    marker the initial phase handed on goes with the run."""
    fake = world()
    lines = [command.shell_line() for command, _ in run_migrate(world(), request()).calls
             if command.mutates]
    number = [i for i, line in enumerate(lines, 1) if " snapshot -r " in line][1]
    with pytest.raises(ZfsError, match="out of space"):
        run_migrate(fake, request(), fail={number: "cannot create snapshot: out of space"})
    assert MIGRATE_MARKER not in fake.datasets["dst"]


def test_the_source_key_is_read_once_with_src_root_s_keyformat_before_any_change() -> None:
    fake = world()
    source, destination, runner = sides(fake, request())
    asked: list[tuple[str, int]] = []

    def reader(keyformat: str) -> Key:
        asked.append((keyformat, sum(command.mutates for command, _ in runner.calls)))
        return Key.hex(HEX)

    migrate(source, request(), source_key=reader, destination_zfs=destination)
    assert asked == [("hex", 0)]


def test_a_refresh_without_snapshots_reads_datasets_anew_and_keeps_their_snapshots() -> None:
    """The cold start's checks: one zfs get of datasets alone; what later steps read
    (mounted, mount point) is the new read, the snapshots the earlier one."""
    fake = MigratingWorld({"src": dataset(guid="1"), "dst": dataset(guid="3", mounted="no"),
                           "dst@a": snapshot(7, 3)})
    zfs, runner = make_zfs(fake)
    wanted = request("cutover")
    state = refresh_destination(zfs, wanted, MigrateState(read_side(zfs, "src"), None))
    assert state.destination is not None and state.destination.nodes["dst"].mounted == "no"
    fake.datasets["dst"]["mounted"] = "yes"
    calls = len(runner.calls)
    state = refresh_destination(zfs, wanted, state, snapshots=False)
    assert len(runner.calls) == calls + 1
    assert "-t filesystem,volume " in runner.calls[-1][0].shell_line()
    assert state.destination is not None
    assert state.destination.nodes["dst"].mounted == "yes"
    assert [s.guid for s in state.destination.nodes["dst"].snapshots] == ["7"]
