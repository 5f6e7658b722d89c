"""Receive recovery: which step comes next, and who may take it (live, dead, legacy owners)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from encroot.errors import OwnerAlive, SwapPending
from encroot.names import DatasetName
from encroot.owned import (
    RECV_REPLACED,
    RECV_VERIFIED,
    Owner,
    ReceiveInProgress,
    ReceiveReplaced,
    ReceiveVerified,
    dumps,
    processes_with_argument,
)
from encroot.owned.owner import process_start
from encroot.receive import (
    Orphan,
    ReceiveRefused,
    ReceiveRequest,
    TargetState,
    next_recovery_action,
    orphan_receives,
    receive_stream,
    recover,
    wait_for_orphans,
)
from encroot.stream import parse_header
from encroot.zfs import Command, Zfs
from encroot.zfs.runner import Result
from encroot.zfs.testing import RecordingRunner

from .fakes import FakeDatasets, make_zfs

RAW_FULL = Path(__file__).parent.parent / "data" / "streams" / "raw-full.zstream"

TARGET = "dst/my data"
TEMP = f"{TARGET}.encroot-recv"
OLD = f"{TARGET}.encroot-old"
ME = Owner.current()
DEAD = Owner(host=ME.host, boot_id="an earlier boot", pid=os.getpid(), start=ME.start)
LIVE = Owner(host=ME.host, boot_id=ME.boot_id, pid=os.getppid(),
             start=process_start(os.getppid()))


def fs(**props: str) -> dict[str, str]:
    base = {"type": "filesystem", "encryption": "off", "encryptionroot": "-",
            "keystatus": "-", "mounted": "no", "canmount": "on", "userrefs": "-",
            "clones": "-", "receive_resume_token": "-"}
    return {**base, **props}


def marked(prop: str, value: str) -> dict[str, str]:
    return {prop: value, f"{prop} source": "local"}


def receiving(owner: Owner | None = DEAD) -> dict[str, str]:
    return marked(RECV_VERIFIED, dumps(ReceiveInProgress(target=TARGET, owner=owner)))


def verified(owner: Owner | None = DEAD, keep: str | None = None) -> dict[str, str]:
    return marked(RECV_VERIFIED, dumps(ReceiveVerified(guid="123", keep_old=keep,
                                                       owner=owner)))


def replaced(owner: Owner | None = DEAD) -> dict[str, str]:
    return marked(RECV_REPLACED, dumps(ReceiveReplaced(target=TARGET, owner=owner)))


def state(tree: dict[str, dict[str, str]] | None = None, *,
          temp: dict[str, dict[str, str]] | None = None,
          old: dict[str, dict[str, str]] | None = None) -> TargetState:
    return TargetState(TARGET, "enabled", fs(), tree if tree is not None else {TARGET: fs()},
                       temp or {}, old or {})


def next_action(current: TargetState, keep_resumable: bool = False) -> str | None:
    action = next_recovery_action(current, keep_resumable)
    return None if action is None else action[0]


def some_action(current: TargetState, keep_resumable: bool = False) -> str:
    """The next action's description, where the state must call for one."""
    action = next_action(current, keep_resumable)
    assert action is not None
    return action


# -- decisions (pure) ----------------------------------------------------------------

def test_clean_state_has_nothing_to_do() -> None:
    assert next_action(state()) is None and not state().needs_recovery()


def test_an_unverified_temporary_of_a_dead_owner_is_destroyed() -> None:
    assert next_action(state(temp={TEMP: {**fs(), **receiving()}})) == \
        f"destroy the unfinished temporary {TEMP}"


def test_a_temporary_without_marker_is_not_ours() -> None:
    lookalike = state(temp={TEMP: fs()})
    assert lookalike.needs_recovery()
    with pytest.raises(ReceiveRefused, match=r"not encroot's .*carries no encroot marker"):
        next_recovery_action(lookalike, False)
    foreign = state(temp={TEMP: {**fs(), **marked(RECV_VERIFIED, "somebody else's")}})
    with pytest.raises(ReceiveRefused, match="legacy 'GUID"):
        next_recovery_action(foreign, False)


def test_a_resumable_temporary_is_kept_when_asked() -> None:
    partial = state(temp={TEMP: {**fs(receive_resume_token="1-abc"), **receiving()}})
    assert next_action(partial, keep_resumable=True) is None
    assert some_action(partial).startswith("destroy")


def test_a_verified_temporary_rolls_forward_after_unmounting_the_old_tree() -> None:
    temp = {TEMP: {**fs(), **verified()}}
    assert next_action(state(temp=temp)) == \
        f"swap in verified {TEMP}: move {TARGET} aside to {OLD}"
    mounted = state({TARGET: fs(mounted="yes")}, temp=temp)
    assert next_action(mounted) == f"unmount {TARGET} for the swap with verified {TEMP}"
    with pytest.raises(ReceiveRefused, match=r"verified new tree .* waits to replace it; "
                                             r"`encroot receive --recover 'dst/my data'` "
                                             r"unmounts"):
        next_recovery_action(mounted, False, unmount_old=False)


def test_between_the_renames_it_rolls_forward_or_back() -> None:
    old = {OLD: {**fs(), **replaced()}}
    temp = {TEMP: {**fs(), **verified()}}
    assert next_action(state({}, temp=temp, old=old)) == f"rename verified {TEMP} to {TARGET}"
    unverified = {TEMP: {**fs(), **receiving()}}
    assert some_action(state({}, temp=unverified, old=old)).startswith("restore the old tree")
    assert some_action(state({}, old=old)).startswith("restore the old tree")


def test_after_the_swap_it_destroys_or_keeps_the_old_tree() -> None:
    new = {TARGET: {**fs(), **verified()}}
    assert next_action(state(new, old={OLD: {**fs(), **replaced()}})) == \
        f"destroy the replaced tree {OLD}"
    kept = {"dst/prev": {**fs(), **replaced()}}
    assert next_action(state(new, old=kept)) == "keep the old tree as dst/prev"
    assert next_action(state(new)) == f"clear {RECV_VERIFIED} on {TARGET}"


def test_the_keep_old_name_recorded_in_the_marker_is_used() -> None:
    temp = {TEMP: {**fs(), **verified(keep="dst/prev")}}
    assert some_action(state(temp=temp)).endswith(f"move {TARGET} aside to dst/prev")


def test_legacy_markers_are_recovered() -> None:
    temp = {TEMP: {**fs(), **marked(RECV_VERIFIED, "123 keep-old=dst/prev")}}
    assert some_action(state(temp=temp)).endswith(f"move {TARGET} aside to dst/prev")
    old = {OLD: {**fs(), **marked(RECV_REPLACED, TARGET)}}
    assert some_action(state({}, old=old)).startswith("restore the old tree")
    legacy_new = {TARGET: {**fs(), **marked(RECV_VERIFIED, "123")}}
    assert next_action(state(legacy_new, old=old)) == f"destroy the replaced tree {OLD}"


def test_an_old_tree_marked_for_another_target_is_not_ours() -> None:
    other = {OLD: {**fs(), **marked(RECV_REPLACED, "dst/other")}}
    assert next_action(state({}, old=other)) is None


def test_inherited_markers_are_not_ours() -> None:
    inherited = {TARGET: {**fs(), RECV_VERIFIED: "123",
                          f"{RECV_VERIFIED} source": "inherited from dst"}}
    assert next_action(state(inherited)) is None
    assert not state(inherited).needs_recovery()


@pytest.mark.parametrize("where", ["temp-receiving", "temp-verified", "old", "target"])
def test_a_live_owner_anywhere_refuses(where: str) -> None:
    current = {
        "temp-receiving": state(temp={TEMP: {**fs(), **receiving(LIVE)}}),
        "temp-verified": state(temp={TEMP: {**fs(), **verified(LIVE)}}),
        "old": state({}, old={OLD: {**fs(), **replaced(LIVE)}}),
        "target": state({TARGET: {**fs(), **verified(LIVE)}}),
    }[where]
    with pytest.raises(OwnerAlive) as caught:
        current.refuse_live_owner()
    assert caught.value.pid == LIVE.pid
    assert f"is held by encroot pid {LIVE.pid} on this host (started " in str(caught.value)


def test_own_and_dead_and_unknown_owners_do_not_refuse() -> None:
    for owner in (ME, DEAD, None):
        state(temp={TEMP: {**fs(), **receiving(owner)}}).refuse_live_owner()


# -- recover() and receive_stream() through the command layer ---------------------------

def world(temp: dict[str, str]) -> FakeDatasets:
    datasets = {"dst": fs(), TARGET: fs(), f"{TARGET}@a": {"type": "snapshot", "guid": "1"},
                TEMP: {k: v for k, v in temp.items() if not k.endswith(" source")}}
    local = {TEMP: {k[:-len(" source")] for k in temp if k.endswith(" source")}}
    return FakeDatasets(datasets, local)


def test_recover_refuses_a_live_owner_and_changes_nothing() -> None:
    fake = world({**fs(), **receiving(LIVE)})
    zfs, _ = make_zfs(fake)
    with pytest.raises(OwnerAlive, match=f"^{TEMP} is held by encroot pid {LIVE.pid} on "
                                         "this host"):
        recover(zfs, DatasetName(TARGET))
    assert fake.changes == []


@pytest.mark.parametrize("owner", [DEAD, None], ids=["dead", "unknown"])
def test_recover_destroys_the_temporary_of_a_dead_or_unknown_owner(owner: Owner | None
                                                                   ) -> None:
    fake = world({**fs(), **receiving(owner)})
    zfs, _ = make_zfs(fake)
    report = recover(zfs, DatasetName(TARGET))
    assert fake.changes == [("destroy", "-r", TEMP)]
    assert report.actions == [f"destroy the unfinished temporary {TEMP}"]


def test_recover_leaves_a_lookalike_alone() -> None:
    fake = world(fs())
    zfs, _ = make_zfs(fake)
    with pytest.raises(ReceiveRefused, match=r"zfs destroy -r 'dst/my data\.encroot-recv'"):
        recover(zfs, DatasetName(TARGET))
    assert fake.changes == []


REPLACE = ReceiveRequest(target=DatasetName(TARGET), force=True, no_mount=True,
                         allow_encryption_change=True)


def raw_full_stream() -> int:
    """A pipe holding the saved raw full stream (small: it fits the pipe), for reading."""
    read, write = os.pipe()
    path = os.path.join(os.path.dirname(__file__), "..", "data", "streams", "raw-full.zstream")
    with open(path, "rb") as stream:
        os.write(write, stream.read())
    os.close(write)
    return read


def test_a_second_receive_refuses_while_the_first_runs() -> None:
    fake = world({**fs(), **receiving(LIVE)})
    zfs, _ = make_zfs(fake)
    request = REPLACE
    read = raw_full_stream()
    try:
        with pytest.raises(OwnerAlive):
            receive_stream(zfs, request, read)
    finally:
        os.close(read)
    assert fake.changes == []


def test_the_marker_property_cannot_be_passed_by_the_caller() -> None:
    with pytest.raises(ValueError, match="encroot's own marker"):
        ReceiveRequest(target=DatasetName(TARGET), properties={RECV_VERIFIED: "x"})


def test_the_temporary_is_owned_from_its_creation() -> None:
    fake = FakeDatasets({"dst": fs(), TARGET: fs(), f"{TARGET}@a": {"type": "snapshot"}})
    zfs, _ = make_zfs(fake)
    request = REPLACE
    read = raw_full_stream()
    try:
        with pytest.raises(Exception, match="missing"):  # the fake receives nothing
            receive_stream(zfs, request, read)
    finally:
        os.close(read)
    receive = fake.changes[0]
    assert receive[0] == "receive" and receive[-1] == TEMP
    marker = receive[receive.index("-o") + 1]
    assert marker == f"{RECV_VERIFIED}=" + dumps(ReceiveInProgress(target=TARGET, owner=ME))
    assert fake.changes == [receive]  # a temporary that is not there is not destroyed


def receive_argument(target: str = TARGET, owner: Owner | None = DEAD) -> str:
    return f"{RECV_VERIFIED}={dumps(ReceiveInProgress(target=target, owner=owner))}"


def test_an_orphan_receive_is_one_whose_encroot_is_gone_and_that_names_the_target() -> None:
    found = [(11, receive_argument()),
             (12, receive_argument(owner=LIVE)),            # its encroot runs: not an orphan
             (13, receive_argument(target="dst/other")),
             (14, f"{RECV_VERIFIED}={dumps(ReceiveVerified(guid='1', keep_old=None, owner=DEAD))}"),
             (15, f"{RECV_VERIFIED}=not a marker"),
             (16, f"{RECV_VERIFIED}X={dumps(ReceiveInProgress(target=TARGET, owner=DEAD))}")]
    assert orphan_receives(TARGET, found) == [Orphan(11, DEAD)]


def test_recovery_waits_until_the_orphan_receive_has_ended() -> None:
    scans = [[(11, receive_argument())]] * 3 + [[]]
    said: list[str] = []
    slept: list[float] = []
    wait_for_orphans(TARGET, say=said.append, scan=lambda prefix: scans.pop(0),
                     sleep=slept.append)
    assert len(slept) == 3 and scans == []
    assert len(said) == 1 and said[0].startswith("waiting for zfs receive pid 11 to end")


def test_an_orphan_that_never_ends_is_refused_after_the_timeout() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(OwnerAlive, match=r"zfs receive pid 11, started by encroot pid .* "
                                         r"which is gone; it still runs after 5 s"):
        wait_for_orphans(TARGET, timeout=5, scan=lambda prefix: [(11, receive_argument())],
                         clock=lambda: now[0], sleep=sleep)
    assert 5 <= now[0] < 6


def test_a_real_orphan_is_found_by_its_command_line_and_waited_for() -> None:
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.5)",
                               receive_argument()])
    try:
        deadline = time.monotonic() + 20  # a loaded host may take a while to exec it
        while not (found := orphan_receives(TARGET, processes_with_argument(RECV_VERIFIED
                                                                            + "="))):
            assert time.monotonic() < deadline and orphan.poll() is None
            time.sleep(0.05)
        assert found == [Orphan(orphan.pid, DEAD)]
        wait_for_orphans(TARGET, timeout=30)
        assert orphan.poll() is not None  # it returned only once the orphan had ended
    finally:
        orphan.kill()
        orphan.wait()


# -- the swap with an old tree in service ----------------------------------------------

BUSY = "cannot unmount '/dst/my data': pool or dataset is busy\n"


@dataclass
class ServingWorld(FakeDatasets):
    """The old target mounted and in use (``busy``); a receive brings the saved raw stream."""

    busy: bool = True

    def __call__(self, command: Command) -> tuple[int, str, str]:
        verb, name = command.argv[1], command.argv[-1]
        if verb == "unmount" and self.busy:
            return 1, "", BUSY
        if verb in ("mount", "unmount"):
            self.changes.append(command.argv[1:])
            self.datasets[name]["mounted"] = "yes" if verb == "mount" else "no"
            return 0, "", ""
        if verb == "receive":
            info = parse_header(RAW_FULL.read_bytes(), complete=True)
            self.datasets[name] = fs(encryption="aes-256-gcm", encryptionroot=name,
                                     keystatus="unavailable")
            self.datasets[f"{name}@{info.tosnap}"] = {"type": "snapshot",
                                                      "guid": str(info.toguid)}
            marker = command.argv[command.argv.index("-o") + 1].partition("=")
            self.datasets[name][marker[0]] = marker[2]
            self.local[name] = {marker[0]}
        return super().__call__(command)


def serving_world() -> ServingWorld:
    return ServingWorld({"dst": fs(), TARGET: fs(mounted="yes"),
                         f"{TARGET}@a": {"type": "snapshot", "guid": "1"}})


def receive_from_pipe(zfs: Zfs, request: ReceiveRequest) -> None:
    read = raw_full_stream()
    try:
        receive_stream(zfs, request, read)
    finally:
        os.close(read)


def test_a_busy_old_tree_at_the_swap_keeps_the_verified_new_tree_and_destroys_nothing(
        ) -> None:
    fake = serving_world()
    zfs, _ = make_zfs(fake)
    with pytest.raises(SwapPending) as caught:
        receive_from_pipe(zfs, REPLACE)
    message = str(caught.value)
    assert "pool or dataset is busy" in message and "nothing was destroyed" in message
    assert f"`encroot receive --recover {TARGET}`" in message
    # both markers, then the replaced one cleared (the old tree stays): no destroy
    assert [change[0] for change in fake.changes] == ["receive", "set", "set", "inherit"]
    assert RECV_REPLACED not in fake.datasets[TARGET]
    assert fake.datasets[TARGET]["mounted"] == "yes"
    assert '"role":"verified"' in fake.datasets[TEMP][RECV_VERIFIED]

    with pytest.raises(SwapPending):  # still busy: --recover waits, changes nothing
        recover(zfs, DatasetName(TARGET))
    with pytest.raises(ReceiveRefused, match="waits to replace it"):  # doctor --fix's way
        recover(zfs, DatasetName(TARGET), unmount_old=False)
    assert [change[0] for change in fake.changes] == ["receive", "set", "set", "inherit"]

    fake.busy = False
    report = recover(zfs, DatasetName(TARGET))
    assert report.actions[0] == f"unmount {TARGET} for the swap with verified {TEMP}"
    assert fake.datasets[TARGET]["encryption"] == "aes-256-gcm"  # the new tree, renamed in
    assert TEMP not in fake.datasets and OLD not in fake.datasets
    assert recover(zfs, DatasetName(TARGET)).actions == []


def test_the_old_tree_is_unmounted_only_after_the_new_one_was_verified() -> None:
    fake = serving_world()
    fake.busy = False
    zfs, _ = make_zfs(fake)
    receive_from_pipe(zfs, REPLACE)
    verbs = [change[0] for change in fake.changes]
    assert verbs[:4] == ["receive", "set", "set", "unmount"]
    assert '"role":"verified"' in fake.changes[1][1]
    assert fake.datasets[TARGET]["encryption"] == "aes-256-gcm" and OLD not in fake.datasets


class _ThreadedRunner(RecordingRunner):
    """Recording, and saying it may run from several threads (as the process runner)."""

    concurrent = True

    def __init__(self, respond: Callable[[Command], tuple[int, str, str]]) -> None:
        super().__init__(respond)
        self.threads: dict[tuple[str, ...], int] = {}

    def run(self, command: Command, **options: Any) -> Result:
        self.threads[command.argv[1:]] = threading.get_ident()
        return super().run(command, **options)


def test_both_markers_and_the_final_cleanup_each_run_as_a_pair_at_once() -> None:
    fake = serving_world()
    fake.busy = False
    runner = _ThreadedRunner(fake)
    zfs = Zfs(runner=runner, binaries=make_zfs()[0].binaries)
    receive_from_pipe(zfs, REPLACE)
    thread = {argv[0] + ("-" + argv[1].split("=", 1)[0] if argv[0] in ("set", "inherit")
                         else ""): ident for argv, ident in runner.threads.items()}
    assert thread[f"set-{RECV_VERIFIED}"] != thread[f"set-{RECV_REPLACED}"]
    assert thread["destroy"] != thread[f"inherit-{RECV_VERIFIED}"]
    assert fake.datasets[TARGET]["encryption"] == "aes-256-gcm" and OLD not in fake.datasets


def test_the_verified_marker_cleared_before_the_old_tree_is_destroyed_still_ends_clean(
        ) -> None:
    """The final pair ran in the other order and was cut between: recovery destroys the
    replaced tree, as after today's order."""
    old = {OLD: {**fs(), **replaced(DEAD)}}
    assert next_action(state({TARGET: fs()}, old=old)) == f"destroy the replaced tree {OLD}"


def test_the_replaced_marker_alone_on_the_target_is_rolled_back() -> None:
    """The pair of markers cut the other way: the old tree marked, the temporary not yet
    verified.  The temporary goes, then the marker: the old data stays."""
    marked_target = {TARGET: {**fs(), **replaced(DEAD)}}
    assert next_action(state(marked_target, temp={TEMP: {**fs(), **receiving()}})) == \
        f"destroy the unfinished temporary {TEMP}"
    assert next_action(state(marked_target)) == f"clear {RECV_REPLACED} on {TARGET}"
