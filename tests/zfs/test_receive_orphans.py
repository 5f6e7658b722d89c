"""No orphans: a SIGKILL of encroot while its `zfs receive` runs ends that receive too.

encroot feeds `zfs receive` through a pipe only encroot writes, so when encroot
dies the receive sees its stream end and ZFS undoes it (or keeps it resumable
with -s); it never goes on writing into a state no one would finish.  The
old target stays mounted while the new tree is received (it is unmounted only
for the swap), so after each kill it is mounted and intact, and `encroot
receive --recover` (which waits for a receive still ending) leaves nothing
behind.  Kill points: mid-stream with the sender still holding its end open
(with and without -s), right after `zfs receive` started (with `--recover`
racing the dying receive), after the stream was received but before it was
verified, and at the swap (after the old tree was unmounted).
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import PoolFactory
from .helpers import encroot, exists, process_files, prop, sh
from .test_receive_interrupted import FLAGS, Scene

pytestmark = pytest.mark.zfs


@pytest.fixture(scope="module")
def shared(module_make_pool: PoolFactory, tmp_path_factory: pytest.TempPathFactory) -> Scene:
    return Scene(module_make_pool(size="256M"), module_make_pool(),
                 tmp_path_factory.mktemp("streams"))


@pytest.fixture
def scene(shared: Scene) -> Scene:
    shared.make_old_target()
    return shared


def receives_into(target: str) -> list[int]:
    """The pids of running processes whose last argument is the target's temporary
    (`zfs receive ... TARGET.encroot-recv`, or a wrapper standing in for zfs)."""
    wanted = f"{target}.encroot-recv".encode()
    return [pid for pid, _, data in process_files()
            if data.rstrip(b"\0").split(b"\0")[-1] == wanted]


def wait_until(condition: object, seconds: float, what: str) -> float:
    started = time.monotonic()
    while not condition():  # type: ignore[operator]
        assert time.monotonic() - started < seconds, f"{what} after {seconds} s"
        time.sleep(0.1)
    return time.monotonic() - started


def assert_old_mounted_and_intact_then_clean(scene: Scene) -> None:
    assert prop(scene.target, "mounted") == "yes", "the old target is not mounted"
    assert scene.has_old(scene.target), "the old target's data changed"
    recovered = encroot(f"receive --recover {scene.target}")
    assert recovered.returncode == 0, recovered.stderr
    assert scene.assert_one_complete_and_clean() == "old"
    assert prop(scene.target, "mounted") == "yes"
    assert receives_into(scene.target) == []


@pytest.mark.parametrize("resumable", [pytest.param(False, marks=pytest.mark.all_versions),
                                       True], ids=["plain", "s"])
def test_sigkill_mid_stream_ends_the_receive_while_the_sender_lives(scene: Scene,
                                                                    resumable: bool) -> None:
    stream = scene.stream.read_bytes()
    flags = FLAGS + (" -s" if resumable else "")
    process = subprocess.Popen(["encroot", *flags.split(), scene.target],
                               stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdin is not None
    try:
        process.stdin.write(stream[:400_000])
        process.stdin.flush()
        temp = scene.target + ".encroot-recv"
        wait_until(lambda: exists(temp) and receives_into(scene.target), 60,
                   "the temporary never appeared")
        process.send_signal(signal.SIGKILL)
        process.wait()
        # the sender (this test) still holds its end open: only encroot's death can end it
        took = wait_until(lambda: not receives_into(scene.target), 30,
                          "zfs receive still runs after encroot was killed")
        print(f"zfs receive ended {took:.1f} s after encroot's SIGKILL")
        if resumable:
            assert prop(temp, "receive_resume_token") not in ("-", "")
        else:
            assert not exists(temp), "ZFS did not undo the cut receive"
        assert_old_mounted_and_intact_then_clean(scene)
    finally:
        process.stdin.close()
        if process.poll() is None:
            process.kill()
        process.wait()


# When the wrapper standing in for zfs kills encroot (its parent), by the zfs subcommand.
WRAPPERS = {
    # the receive starts 12 s after encroot died (a guest under TCG needs seconds to start
    # encroot), so --recover must find it and wait
    "receive-started": '[ "$1" = receive ]; then exec 3<&0; (sleep 12; exec "$REAL" "$@" <&3) &'
                       ' kill -9 $PPID; wait; exit 1; fi',
    "receive-done": '[ "$1" = receive ]; then "$REAL" "$@"; rc=$?; kill -9 $PPID; exit $rc; fi',
    "at-swap": '[ "$1" = unmount ]; then "$REAL" "$@"; rc=$?; kill -9 $PPID; exit $rc; fi',
}


def wrapper(folder: Path, point: str) -> Path:
    real = sh("command -v zfs").stdout.strip()
    script = folder / f"zfs-{point}"
    script.write_text(f"#!/bin/bash\nREAL={real}\nif {WRAPPERS[point]}\nexec {real} \"$@\"\n")
    script.chmod(0o755)
    return script


@pytest.mark.parametrize("point", list(WRAPPERS))
def test_sigkill_while_zfs_runs_then_recover(scene: Scene, tmp_path: Path, point: str) -> None:
    killed = sh(f"ENCROOT_ZFS={wrapper(tmp_path, point)} encroot {FLAGS} {scene.target} "
                f"< {scene.stream}", check=False)
    assert killed.returncode in (-9, 137), (killed.returncode, killed.stderr)
    if point != "at-swap":
        if point == "receive-started":
            assert receives_into(scene.target), "the delayed receive is not running"
            recovered = encroot(f"receive -v --recover {scene.target}")
            assert recovered.returncode == 0, recovered.stderr
            assert "waiting for zfs receive pid" in recovered.stderr
            assert receives_into(scene.target) == []
        assert_old_mounted_and_intact_then_clean(scene)
        return
    temp = scene.target + ".encroot-recv"
    assert prop(scene.target, "mounted") == "no" and scene.has_old(scene.target)
    assert '"role":"verified"' in prop(temp, "encroot:recv-verified")
    recovered = encroot(f"receive --recover {scene.target}")
    assert recovered.returncode == 0, recovered.stderr
    assert scene.assert_one_complete_and_clean() == "new"
