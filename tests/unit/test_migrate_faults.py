"""Migrate's executor and its recovery through the fault injector (``encroot.zfs.testing``).

Each phase (initial, catch-up, cutover, and all of them in one command; DST on this
host or on another) is killed before each of its state-changing commands in turn,
as if encroot died there, and run again by another process: it must end exactly as
the same phase run once, uninterrupted (every dataset with its encryption, key root,
key status and mount; every snapshot with its GUID; no marker, no staging, no partial
receive left).  Where the re-run refuses (DST left exported, or imported without its
key, by a cutover killed inside its cold start), the test does what the refusal's fix
says, as a user would, and runs it again.  Then: a command failing with ZFS's message
leaves what the next run completes, and a second encroot is refused, changing
nothing, while the first one's process lives.  The world is ``migrating.MigratingWorld``:
decisions only, never proof that ZFS works (the lab's interruption tests are).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from encroot.errors import MigrateRefused
from encroot.migrate import MigrateRequest
from encroot.owned import MIGRATE_MARKER, MIGRATE_SNAPSHOT_PREFIX, MIGRATE_STAGING
from encroot.owned import owner as owner_module
from encroot.zfs.testing import Killed

from .migrating import MigratingWorld, dataset
from .test_migrate_commands import DST_HOST, _fixed, after_initial, request, run_migrate, sides
from .test_migrate_commands import world as fresh_world

STATE = ("type", "encryption", "encryptionroot", "keystatus", "keyformat", "mounted",
         "receive_resume_token", MIGRATE_MARKER)


@dataclass
class Processes:
    """The encroot processes of a test: which pid runs now, which still run (pid 1 is
    the test itself, which prepares each world)."""

    pid: int = 1
    running: set[int] = field(default_factory=lambda: {1})

    def start(self, pid: int) -> str:
        """``process_start``: a running pid's start time, "" for a gone one."""
        return str(pid) if pid in self.running else ""

    def become(self, pid: int) -> None:
        self.pid = pid
        self.running.add(pid)


@pytest.fixture(autouse=True)
def processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Processes]:
    _fixed(monkeypatch)  # host, boot, clock, altroot names as the recorded scenarios have them
    found = Processes()
    monkeypatch.setattr(owner_module, "process_start", found.start)
    monkeypatch.setattr(os, "getpid", lambda: found.pid)
    yield found


def after_initial_and_a_new_child() -> MigratingWorld:
    """After the initial copy, SRC gained a child (src/data/b, no snapshot yet)."""
    fake = after_initial()
    fake.datasets["src/data/b"] = dataset(guid="6", mountpoint="/encroot-test-absent/src/data/b",
                                          createtxg=str(next(fake.txg)))
    fake.local["src/data/b"] = set()
    return fake


@dataclass(frozen=True)
class Phase:
    """One command of a migration: the world it starts from, the request."""

    before: Callable[[], MigratingWorld]
    wanted: MigrateRequest

    @property
    def cutover(self) -> bool:
        return "cutover" in self.wanted.phases


REMOTE = {"destination_host": DST_HOST}
PHASES = {
    "initial": Phase(fresh_world, request("initial")),
    "catch-up": Phase(after_initial_and_a_new_child, request("catch-up")),
    "cutover": Phase(after_initial, request("cutover")),
    "all": Phase(fresh_world, request()),
    "initial-remote": Phase(fresh_world, request("initial", **REMOTE)),
    "catch-up-remote": Phase(after_initial_and_a_new_child, request("catch-up", **REMOTE)),
    "cutover-remote": Phase(after_initial, request("cutover", **REMOTE)),
    "all-remote": Phase(fresh_world, request(**REMOTE)),
}


def final(fake: MigratingWorld) -> dict[str, object]:
    """What a migration leaves, comparable: each dataset's state (not its own GUID, which
    ZFS gives a received dataset anew), each snapshot's GUID."""
    return {name: props["guid"] if "@" in name else tuple(props.get(p, "-") for p in STATE)
            for name, props in fake.datasets.items()}


def source_of(name: str) -> str:
    """The SRC dataset or snapshot that a DST one (staged or moved) copies."""
    for prefix in (f"dst/{MIGRATE_STAGING}", "dst"):
        if name == prefix or name.startswith((prefix + "/", prefix + "@")):
            return "src" + name[len(prefix):]
    raise AssertionError(name)


def assert_migrated(fake: MigratingWorld, phase: Phase) -> None:
    """Every SRC snapshot on DST with its GUID (SRC root's only until cutover drops its
    copy), nothing of encroot's left on DST."""
    assert not fake.exported
    dst = {n: p for n, p in fake.datasets.items() if n.split("/")[0].split("@")[0] == "dst"}
    copies = {source_of(n): p["guid"] for n, p in dst.items() if "@" in n}
    for name, props in fake.datasets.items():
        if name.startswith("src") and "@" in name and not (phase.cutover and
                                                           name.startswith("src@")):
            assert copies.get(name) == props["guid"], name
    assert MIGRATE_MARKER not in fake.datasets["dst"]
    assert all(p["receive_resume_token"] == "-" for n, p in dst.items() if "@" not in n)
    if phase.cutover:
        assert not [n for n in dst if MIGRATE_STAGING in n.split("@")[0]]
        assert fake.datasets["dst/data/a"]["encryptionroot"] == "dst"


def mutations(phase: Phase) -> list[str]:
    """The state-changing commands of the phase run once, uninterrupted, as shell lines."""
    fake = phase.before()
    runner = run_migrate(fake, phase.wanted)
    return [command.shell_line() for command, _ in runner.calls if command.mutates]


def new_goal_allowed(lines: list[str], kill_before: int) -> bool:
    """Whether the re-run may take more goal snapshots than the uninterrupted run.

    initial and catch-up reuse a goal not sent yet; once its stream arrived, running
    the phase again is another catch-up, with a goal of its own.  cutover always takes
    a fresh goal: killed after its snapshot and before its marker, the next cutover
    takes another.  Once the cutover marker is set, no goal is taken again.
    """
    done = lines[:kill_before - 1]
    marks = [i for i, line in enumerate(lines) if f"{MIGRATE_MARKER}={{" in line]
    if marks and marks[0] < len(done):
        return False
    claims = [i for i, line in enumerate(lines) if " program " in line]
    cutover = claims[-1] if marks else len(lines)  # where the cutover phase begins
    copied = [i for i, line in enumerate(lines[:cutover]) if " receive " in line]
    return (bool(copied) and copied[-1] < len(done)) or \
        any(" snapshot " in line for line in done[cutover:])


def without_new_goals(state: dict[str, object], reference: dict[str, object]) -> dict[str, object]:
    """``state`` without the encroot goal snapshots the reference does not have."""
    extra = {name for name in state if name not in reference and "@" in name}
    assert all(name.split("@")[1].startswith(MIGRATE_SNAPSHOT_PREFIX) for name in extra), extra
    return {name: value for name, value in state.items() if name not in extra}


def carry_on(fake: MigratingWorld, wanted: MigrateRequest) -> list[str]:
    """Run ``wanted`` again until it ends; where it refuses, do what its fix says (as a
    user would) and run it again.  Returns the fixes done."""
    fixes: list[str] = []
    for _ in range(3):
        try:
            run_migrate(fake, wanted)
            return fixes
        except MigrateRefused as exc:
            _, destination, _ = sides(fake, wanted)
            if "is not imported" in str(exc):
                command = destination.commands.import_pool("dst", no_mount=True)
            elif "key is not loaded; fix: zfs load-key dst" in str(exc):
                command = destination.commands.load_key_at_location("dst")
            else:
                raise
            destination.execute(command)
            fixes.append(" ".join(command.argv[1:]))
    raise AssertionError(f"still refused after {fixes}")


def killed(fake: MigratingWorld, wanted: MigrateRequest, kill_before: int,
           processes: Processes, pid: int) -> None:
    """``wanted`` run as ``pid`` and killed before its ``kill_before``-th change."""
    processes.become(pid)
    with pytest.raises(Killed):
        run_migrate(fake, wanted, kill_before=kill_before)


@pytest.mark.parametrize("name", PHASES)
def test_killed_before_any_change_the_next_run_ends_as_one_uninterrupted(
        name: str, processes: Processes) -> None:
    phase = PHASES[name]
    lines = mutations(phase)
    reference = phase.before()
    run_migrate(reference, phase.wanted)
    assert_migrated(reference, phase)
    expected = final(reference)
    needed_fixes = []
    for kill_before in range(1, len(lines) + 1):
        fake = phase.before()
        killed(fake, phase.wanted, kill_before, processes, pid=2)
        processes.running.discard(2)  # encroot died there
        processes.become(3)
        fixes = carry_on(fake, phase.wanted)
        if fixes:
            needed_fixes.append((lines[kill_before - 1], fixes))
        assert_migrated(fake, phase)
        state = final(fake)
        if new_goal_allowed(lines, kill_before):
            state = without_new_goals(state, expected)
        assert state == expected, (kill_before, lines[kill_before - 1])
    # only a cutover killed inside its cold start or re-import needs the user: DST was
    # left exported (import it without mounting) or imported without its key (load it)
    assert all("zpool import" in line or "load-key dst" in line
               or f"inherit {MIGRATE_MARKER} dst" in line for line, _ in needed_fixes), \
        needed_fixes
    assert bool(needed_fixes) == phase.cutover
