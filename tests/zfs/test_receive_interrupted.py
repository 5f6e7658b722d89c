"""Interrupting `encroot receive --allow-encryption-change` at every point loses nothing.

Interruptions: a stream cut at several offsets, a SIGKILL of `zfs receive`, a
full pool, and a SIGKILL of encroot itself before each state-changing
command (injected through the command layer's runner).  After each, the old
target's data is intact, or the new data is complete; `encroot receive
--recover` (or the next run) leaves exactly one of them under the target's
name and no temporaries.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import PoolFactory
from .helpers import (
    create_encrypted,
    encroot,
    exists,
    load_key,
    names_under,
    prop,
    props_under,
    sh,
    snapshot_guids,
    tree_hashes,
    write_files,
)

pytestmark = pytest.mark.zfs

FLAGS = "receive -F -u --allow-encryption-change"
TEMPORARIES = (".encroot-recv", ".encroot-old")


def _state(name: str) -> dict[str, str] | None:
    """The properties the checks below read, in one ``zfs get``; None if ``name`` is gone."""
    return props_under(name, "encryption", "keystatus", "mounted", "mountpoint",
                       missing_ok=True).get(name)


class Scene:
    """A source dataset with a saved raw stream, and an old unencrypted target."""

    def __init__(self, src: str, dst: str, stream_dir: Path, data_bytes: int = 1 << 20) -> None:
        self.src, self.dst = src, dst
        self.source = f"{src}/fs"
        self.target = f"{dst}/fs"
        create_encrypted(self.source)
        write_files(f"/{self.source}", {"big.bin": os.urandom(data_bytes), "ok": b"ok\n"})
        sh(f"zfs snapshot {self.source}@A")
        self.stream = stream_dir / f"{src}.zstream"
        sh(f"zfs send -w {self.source}@A > {self.stream}")
        self.source_hashes = tree_hashes(f"/{self.source}")
        self.make_old_target()

    def make_old_target(self) -> None:
        present = set(names_under(self.dst))
        for name in (self.target, *(self.target + s for s in TEMPORARIES)):
            if name in present:
                sh(f"zfs destroy -r '{name}'")
        sh(f"zfs create {self.target} && zfs snapshot {self.target}@before")
        write_files(f"/{self.target}", {"old.txt": b"the old data\n"})
        self.old_hashes = tree_hashes(f"/{self.target}")

    def has_old(self, name: str) -> bool:
        state = _state(name)
        if state is None or state["encryption"] != "off":
            return False
        return self._hashes_match(name, state, self.old_hashes)

    def has_new(self, name: str) -> bool:
        state = _state(name)
        if state is None or state["encryption"] == "off":
            return False
        if snapshot_guids(name) != snapshot_guids(self.source):
            return False
        return self._hashes_match(name, state, self.source_hashes)

    def _hashes_match(self, name: str, state: dict[str, str], expected: dict[str, str]
                      ) -> bool:
        """Compare file hashes, leaving mount and key state as they were.

        The checks between an interruption and the recovery must not change
        what the recovery sees.
        """
        loaded = state["keystatus"] == "unavailable"
        if loaded:
            load_key(name)
        mounted = state["mounted"] != "yes"
        if mounted:
            sh(f"zfs mount '{name}'")
        try:
            return tree_hashes(f"/{state['mountpoint']}") == expected
        finally:
            if mounted:
                sh(f"zfs unmount '{name}'")
            if loaded:
                sh(f"zfs unload-key '{name}'")

    def leftovers(self) -> list[str]:
        return [n for n in names_under(self.dst) if any(s in n for s in TEMPORARIES)]

    def assert_one_complete_and_clean(self) -> str:
        """After recovery: the target holds the old or the new data; nothing else is left."""
        assert self.leftovers() == []
        names = ("encroot:recv-verified", "encroot:recv-replaced")
        values = props_under(self.target, *names)[self.target]
        for marker in names:
            assert values[marker] == "-", f"{marker} left on {self.target}"
        if self.has_old(self.target):
            return "old"
        assert self.has_new(self.target), f"{self.target} holds neither old nor new data"
        return "new"


@pytest.fixture(scope="module")
def shared_scene(module_make_pool: PoolFactory, tmp_path_factory: pytest.TempPathFactory
                 ) -> Scene:
    """One source and saved stream for the module; each test gets a fresh old target."""
    return Scene(module_make_pool(size="256M"), module_make_pool(),
                 tmp_path_factory.mktemp("streams"))


@pytest.fixture
def scene(shared_scene: Scene) -> Scene:
    shared_scene.make_old_target()
    return shared_scene


def test_cut_streams_leave_the_old_target(scene: Scene) -> None:
    size = scene.stream.stat().st_size
    for cut in (0, 100, 312, 400, size // 3, size // 2, size - 5000):
        done = encroot(f"{FLAGS} {scene.target}",
                       stdin_from=f"head -c {cut} {scene.stream}")
        assert done.returncode != 0, f"cut at {cut} succeeded"
        assert "\n" not in done.stderr.strip() or "Traceback" not in done.stderr
        assert "Traceback" not in done.stderr
        assert scene.has_old(scene.target), f"old data damaged after a cut at {cut}"
        assert scene.leftovers() == [], f"temporaries left after a cut at {cut}"
    complete = encroot(f"{FLAGS} {scene.target}", stdin_from=f"cat {scene.stream}")
    assert complete.returncode == 0, complete.stderr
    assert scene.assert_one_complete_and_clean() == "new"


@pytest.mark.all_versions
def test_cut_stream_with_s_resumes(scene: Scene) -> None:
    size = scene.stream.stat().st_size
    cut = encroot(f"{FLAGS} -s {scene.target}", stdin_from=f"head -c {size // 2} {scene.stream}")
    assert cut.returncode != 0
    temp = scene.target + ".encroot-recv"
    token = prop(temp, "receive_resume_token")
    assert token not in ("-", "") and scene.has_old(scene.target)
    resumed = encroot(f"{FLAGS} -s {scene.target}", stdin_from=f"zfs send -t {token}")
    assert resumed.returncode == 0, resumed.stderr
    assert scene.assert_one_complete_and_clean() == "new"


def test_sigkill_of_zfs_receive_leaves_the_old_target(scene: Scene) -> None:
    slow = f"( head -c 400000 {scene.stream}; sleep 30; tail -c +400001 {scene.stream} )"
    process = subprocess.Popen(["bash", "-c", f"{slow} | encroot {FLAGS} {scene.target}"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    # only this test's receive: tests of other modules may run beside this one
    ours = f"'[z]fs receive.* {scene.dst}/'"
    while sh(f"pgrep -f {ours}", check=False).returncode != 0:
        assert time.monotonic() < deadline, "zfs receive never started"
        time.sleep(0.2)
    time.sleep(1)
    sh(f"pkill -KILL -f {ours}")
    _, err = process.communicate(timeout=120)
    assert process.returncode != 0
    assert b"Traceback" not in err
    assert scene.has_old(scene.target)
    assert scene.leftovers() == []


def test_full_pool_leaves_the_old_target(make_pool: PoolFactory, tmp_path: Path) -> None:
    scene = Scene(make_pool(size="256M"), make_pool(size="96M"), tmp_path,
                  data_bytes=80 << 20)
    done = encroot(f"{FLAGS} {scene.target}", stdin_from=f"cat {scene.stream}")
    assert done.returncode != 0
    assert "space" in done.stderr
    assert scene.has_old(scene.target)
    assert scene.leftovers() == []


KILLER = """
import os, signal, sys
from encroot import receive as rx
from encroot.names import DatasetName
from encroot.zfs import SubprocessRunner, Zfs

class KillBefore(SubprocessRunner):
    '''SIGKILL this process before its Nth state-changing command.'''
    concurrent = False  # the plan's order, so that N names one step (Zfs.concurrently)
    def __init__(self, n):
        super().__init__()
        self.n, self.count = n, 0
    def run(self, command, **kwargs):
        if command.mutates:
            self.count += 1
            if self.count == self.n:
                os.kill(os.getpid(), signal.SIGKILL)
        return super().run(command, **kwargs)

n, target = int(sys.argv[1]), DatasetName(sys.argv[2])
request = rx.ReceiveRequest(target=target, force=True, no_mount=True,
                            allow_encryption_change=True)
with open(sys.argv[3], "rb", buffering=0) as stream:
    rx.receive_stream(Zfs(runner=KillBefore(n)), request, stream.fileno())
print("completed")
"""

# receive, mark verified, mark replaced (the two run at once in a real run; here one
# after the other), unmount (the old tree stays mounted until the swap), rename, rename,
# destroy, clear marker (also at once in a real run)
STATE_CHANGES = 8


@pytest.mark.parametrize("kill_before", range(1, STATE_CHANGES + 2))
def test_sigkill_of_encroot_before_each_step_then_recover(scene: Scene,
                                                          kill_before: int) -> None:
    done = subprocess.run([sys.executable, "-c", KILLER, str(kill_before), scene.target,
                           str(scene.stream)], capture_output=True, text=True, check=False)
    if kill_before <= STATE_CHANGES:
        assert done.returncode == -9, done.stderr
    else:
        assert done.returncode == 0 and "completed" in done.stdout, done.stderr
    temp, old = scene.target + ".encroot-recv", scene.target + ".encroot-old"
    old_somewhere = scene.has_old(scene.target) or scene.has_old(old)
    new_somewhere = scene.has_new(scene.target) or (
        exists(temp) and prop(temp, "encroot:recv-verified") != "-" and scene.has_new(temp))
    assert old_somewhere or new_somewhere, "neither the old nor the new data is complete"

    recovered = encroot(f"receive --recover {scene.target}")
    assert recovered.returncode == 0, recovered.stderr
    outcome = scene.assert_one_complete_and_clean()
    expected = "old" if kill_before <= 2 else "new"  # verified from step 3 on: rolled forward
    assert outcome == expected, f"killed before step {kill_before}: got the {outcome} data"
    again = encroot(f"receive --recover {scene.target}")
    assert "nothing to recover" in again.stdout


def test_next_run_recovers_before_receiving(scene: Scene) -> None:
    killed = subprocess.run([sys.executable, "-c", KILLER, "6", scene.target,
                             str(scene.stream)], capture_output=True, check=False)
    assert killed.returncode == -9 and not exists(scene.target)
    done = encroot(f"{FLAGS} {scene.target}", stdin_from=f"cat {scene.stream}")
    assert done.returncode == 0, done.stderr
    assert "recovered first" in done.stdout
    assert scene.assert_one_complete_and_clean() == "new"
