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

from encroot.errors import (
    DatasetBusy,
    MigrateRefused,
    OutOfSpace,
    OwnerAlive,
    PermissionDenied,
    ZfsError,
)
from encroot.migrate import MigrateRequest, plan_migration
from encroot.owned import (
    MIGRATE_MARKER,
    MIGRATE_SNAPSHOT_PREFIX,
    MIGRATE_STAGING,
    MigratePhase,
    Owner,
    dumps,
)
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


# -- a command failing with ZFS's message -------------------------------------------------

@dataclass(frozen=True)
class Failure:
    """The first state-changing command containing ``command`` fails with ``message``."""

    phase: str
    command: str
    message: str
    raised: type[ZfsError]


FAILURES = {
    "initial-receive-out-of-space": Failure(
        "initial", " receive ", "cannot receive new filesystem stream: out of space",
        OutOfSpace),
    "catch-up-receive-out-of-space": Failure(
        "catch-up-remote", " receive ", "cannot receive incremental stream: out of space",
        OutOfSpace),
    "cutover-receive-out-of-space": Failure(
        "cutover", " receive ", "cannot receive incremental stream: out of space", OutOfSpace),
    "cutover-change-key-refused": Failure(
        "cutover-remote", "change-key -i", "Key change error: Permission denied.",
        PermissionDenied),
    "cutover-move-busy": Failure(
        "cutover", "rename -u", "cannot rename 'dst/encroot-migrate/data': dataset is busy",
        DatasetBusy),
    "all-export-busy": Failure("all", "zpool export", "cannot export 'dst': pool is busy",
                               DatasetBusy),
}


@pytest.mark.parametrize("name", FAILURES)
def test_a_failing_command_leaves_what_the_next_run_completes(
        name: str, processes: Processes) -> None:
    failure = FAILURES[name]
    phase = PHASES[failure.phase]
    lines = mutations(phase)
    number = next(i for i, line in enumerate(lines, 1) if failure.command in line)
    reference = phase.before()
    run_migrate(reference, phase.wanted)
    fake = phase.before()
    processes.become(2)
    with pytest.raises(failure.raised) as caught:
        run_migrate(fake, phase.wanted, fail={number: failure.message})
    assert failure.message in str(caught.value)
    marker = fake.datasets.get("dst", {}).get(MIGRATE_MARKER)
    began = any(f"{MIGRATE_MARKER}={{" in line for line in lines[:number - 1])
    # the phase marker goes with the run that failed; cutover's stays, saying it began
    if began:
        assert marker is not None and '"role":"cutover"' in marker
    else:
        assert marker is None
    processes.running.discard(2)
    processes.become(3)
    carry_on(fake, phase.wanted)
    assert_migrated(fake, phase)
    state = final(fake)
    if new_goal_allowed(lines, number):
        state = without_new_goals(state, final(reference))
    assert state == final(reference)


# -- a second encroot while the first one lives ---------------------------------------------

def _copy(fake: MigratingWorld) -> object:
    return repr((fake.datasets, fake.local, fake.exported))


@pytest.mark.parametrize("name", PHASES)
def test_while_a_killed_run_lives_a_second_run_is_refused_and_changes_nothing(
        name: str, processes: Processes) -> None:
    """The first run stopped before each change in turn, its process still alive (stopped,
    or slow): a second run changes nothing; once the first is gone, it completes."""
    phase = PHASES[name]
    lines = mutations(phase)
    reference = phase.before()
    run_migrate(reference, phase.wanted)
    refused = []
    for kill_before in range(2, len(lines) + 1):
        fake = phase.before()
        killed(fake, phase.wanted, kill_before, processes, pid=2)  # pid 2 lives on
        held = MIGRATE_MARKER in fake.datasets.get("dst", {}) or "dst" in fake.exported
        before, changes = _copy(fake), len(fake.changes)
        processes.become(3)
        if held:
            with pytest.raises((OwnerAlive, MigrateRefused)) as caught:
                run_migrate(fake, phase.wanted)
            assert _copy(fake) == before and len(fake.changes) == changes
            if "dst" in fake.exported:  # its marker cannot be read: DST is not imported
                assert "is not imported" in str(caught.value)
            else:
                assert isinstance(caught.value, OwnerAlive) and "pid 2" in str(caught.value)
            refused.append(kill_before)
        processes.running.discard(2)
        carry_on(fake, phase.wanted)
        state = final(fake)
        if new_goal_allowed(lines, kill_before):
            state = without_new_goals(state, final(reference))
        assert state == final(reference), (kill_before, lines[kill_before - 1])
    assert refused


@dataclass
class RacedWorld(MigratingWorld):
    """Another encroot (``rival``'s marker) claims DST between this run's read and its claim."""

    rival: str = ""

    def _claim(self) -> tuple[int, str, str]:
        if self.rival:
            self.datasets["dst"][MIGRATE_MARKER] = self.rival
            self.local["dst"].add(MIGRATE_MARKER)
            self.rival = ""
        return super()._claim()


def test_a_second_run_claiming_dst_at_the_same_time_is_refused_before_its_snapshot(
        processes: Processes) -> None:
    base = fresh_world()
    processes.become(7)
    rival = dumps(MigratePhase(source="src", phase="initial", owner=Owner.current()))
    fake = RacedWorld(base.datasets, base.local, rival=rival)
    processes.become(3)
    with pytest.raises(OwnerAlive, match="pid 7"):
        run_migrate(fake, request("initial"))
    assert not [n for n in fake.datasets if "@encroot-migrate" in n]
    assert fake.datasets["dst"][MIGRATE_MARKER] == rival  # the winner's, untouched


def test_after_re_parenting_began_catch_up_names_the_cutover_and_n_plans_it_alone(
        processes: Processes) -> None:
    fake = after_initial()
    lines = mutations(PHASES["cutover"])
    change_key = next(i for i, line in enumerate(lines, 1) if "change-key -i" in line)
    killed(fake, request("cutover"), change_key + 1, processes, pid=2)
    processes.running.discard(2)
    processes.become(3)
    with pytest.raises(MigrateRefused) as caught:
        run_migrate(fake, request("catch-up"))
    assert "12614" in str(caught.value)
    assert "fix: finish that cutover: encroot migrate --phase cutover src dst" in str(
        caught.value)
    source, destination, _ = sides(fake, request())
    plans = plan_migration(source, request(), destination)  # -n without --phase
    assert [(p.phase, p.refusals, p.transfers_done) for p in plans] == [("cutover", [], True)]
