"""The public test seam encroot.zfs.testing: recording, killing and failing at chosen steps."""

from __future__ import annotations

import pytest

import encroot.zfs.testing as testing
from encroot.errors import DatasetBusy
from encroot.names import DatasetName
from encroot.receive import recover
from encroot.zfs import Command, Runner, Zfs
from encroot.zfs.testing import FaultInjector, Killed, RecordingRunner, Replaced

from .fakes import BINARIES, FakeDatasets
from .test_receive_recover import OLD, TARGET, TEMP, fs, verified


def test_exports() -> None:
    assert set(testing.__all__) == {"FaultInjector", "Killed", "RecordingRunner", "Replaced",
                                   "Responder"}
    for name in testing.__all__:
        assert hasattr(testing, name), name


def _zfs(runner: Runner) -> Zfs:
    return Zfs(runner=runner, binaries=BINARIES)


def test_a_kill_stops_the_nth_change_and_everything_after_it() -> None:
    recording = RecordingRunner()
    zfs = _zfs(FaultInjector(recording, kill_before=2))
    zfs.get(["p/a"], ["mounted"], use_json=False)  # reads never count
    zfs.set("p/a", {"user:x": "1"})
    with pytest.raises(Killed, match=r"before state-changing command 2: .* set user:y=2 p/a"):
        zfs.set("p/a", {"user:y": "2"})
    with pytest.raises(Killed):  # a dead process runs nothing more, reads included
        zfs.get(["p/a"], ["mounted"], use_json=False)
    assert [argv[1] for argv in recording.argvs] == ["get", "set"]


def test_a_failure_answers_with_zfss_message_and_the_run_goes_on() -> None:
    recording = RecordingRunner()
    zfs = _zfs(FaultInjector(recording, fail={1: "cannot unmount '/p/a': pool or dataset is "
                                                "busy"}))
    with pytest.raises(DatasetBusy, match="pool or dataset is busy"):
        zfs.unmount("p/a")
    zfs.unmount("p/a")
    assert [argv[1] for argv in recording.argvs] == ["unmount"]


def test_an_exec_is_recorded_and_ends_the_run_unless_the_process_died_first() -> None:
    recording = RecordingRunner()
    injector = FaultInjector(recording, kill_before=1)
    command = Command(("/sbin/zfs", "receive", "p/a"), mutates=True)
    with pytest.raises(Replaced) as caught:
        injector.replace(command)
    assert caught.value.command == command and recording.replaced == [command]
    with pytest.raises(Killed):
        injector.run(Command(("/sbin/zfs", "destroy", "p/a"), mutates=True))
    with pytest.raises(Killed):  # a dead process execs nothing
        injector.replace(command)
    assert recording.replaced == [command] and recording.calls == []


def _verified_world() -> FakeDatasets:
    """An interrupted replacement of TARGET: the new tree verified, not yet swapped."""
    temp = {**fs(), **verified()}
    datasets = {"dst": fs(), TARGET: fs(**{"user:v": "old"}), TEMP: {**temp, "user:v": "new"}}
    local = {TEMP: {k[:-len(" source")] for k in temp if k.endswith(" source")}}
    return FakeDatasets(datasets, local)


@pytest.mark.parametrize("kill_before", [1, 2, 3, 4, 5])
def test_recovery_killed_at_each_step_converges_when_run_again(kill_before: int) -> None:
    """Recovery is itself interruptible: killed before any of its changes, a second
    recovery ends with the new tree at TARGET and nothing of encroot's left."""
    world = _verified_world()
    with pytest.raises(Killed):  # the full recovery makes five changes: each is a kill point
        recover(_zfs(FaultInjector(RecordingRunner(world), kill_before=kill_before)),
                DatasetName(TARGET))
    assert len(world.changes) == kill_before - 1
    recover(_zfs(RecordingRunner(world)), DatasetName(TARGET))
    assert world.datasets[TARGET]["user:v"] == "new"
    assert TEMP not in world.datasets and OLD not in world.datasets
    assert recover(_zfs(RecordingRunner(world)), DatasetName(TARGET)).actions == []
