"""The public test seam encroot.zfs.testing: recording, killing and failing at chosen steps."""

from __future__ import annotations

import pytest

import encroot.zfs.testing as testing
from encroot.errors import DatasetBusy
from encroot.names import DatasetName
from encroot.receive import recover
from encroot.zfs import Zfs
from encroot.zfs.testing import FaultInjector, Killed, RecordingRunner

from .fakes import BINARIES, FakeDatasets
from .test_receive_recover import OLD, TARGET, TEMP, fs, verified


def test_exports() -> None:
    assert set(testing.__all__) == {"FaultInjector", "Killed", "RecordingRunner", "Responder"}
    for name in testing.__all__:
        assert hasattr(testing, name), name


def _zfs(runner: object) -> Zfs:
    return Zfs(runner=runner, binaries=BINARIES)  # type: ignore[arg-type]


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
