"""Interrupting `encroot encrypt` loses nothing: a SIGKILL of encroot before chosen steps of
cutover (the unmount, the snapshot, a transfer, the verified mark, each rename, the
destroy), then `--recover`; and a stream cut in the initial phase, then the phase again.

After `--recover` exactly one complete tree is under the name: the old one (interrupted
before the new one was marked verified) or the new one (after), with every file and
snapshot, mounted, and no leftovers.

The tree is built once per module and saved, and once more after the initial phase
(``PoolMaker.save``); each test imports a fresh copy of the state it starts from.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import PoolMaker, SavedPool
from .helpers import encroot, names_under, prop, sh
from .test_convert import HEX_1, Scene, build_tree, file_state, snapshot_state

pytestmark = pytest.mark.zfs

KILLER = """
import os, shlex, signal, subprocess, sys
from encroot.convert import ConvertRequest, convert
from encroot.keys import Key
from encroot.zfs import Command, SubprocessRunner, Zfs

class KillAt(SubprocessRunner):
    '''At the Nth state-changing command whose shell line contains WORD: SIGKILL this
    process before it (kill), cut the stream of that pipe (cut), or fill the pool just
    before that pipe starts (fill: a reservation takes all but 64 KiB).'''
    def __init__(self, word, n, mode, pool):
        super().__init__()
        self.word, self.n, self.mode, self.pool, self.seen = word, n, mode, pool, 0
    def _gate(self, command):
        if command.mutates and self.word in command.shell_line() and self.mode == "kill":
            self.seen += 1
            if self.seen == self.n:
                os.kill(os.getpid(), signal.SIGKILL)
    def run(self, command, **kwargs):
        self._gate(command)
        return super().run(command, **kwargs)
    def pipe(self, sender, receiver, **kwargs):
        self._gate(receiver)
        if self.mode != "kill" and self.word in sender.shell_line():
            self.seen += 1
            if self.seen == self.n and self.mode == "cut":
                line = shlex.join(sender.argv) + " | head -c 30000"
                sender = Command(("bash", "-c", line))
            elif self.seen == self.n:
                subprocess.run(["sh", "-c", f"free=$(zfs get -Hp -o value available "
                                f"{self.pool}); zfs create -o refreservation=$((free - "
                                f"65536)) {self.pool}/filler"], check=True)
        return super().pipe(sender, receiver, **kwargs)

word, n, mode, dataset, phase, key_file = sys.argv[1:7]
key = Key.from_file(key_file, "hex") if key_file != "-" else None
options = dict(keyformat="hex", keylocation=f"file://{key_file}") if key else {}
request = ConvertRequest("encrypt", dataset, phase=phase, **options)
convert(Zfs(runner=KillAt(word, int(n), mode, dataset.split("/")[0])), request, key=key)
print("completed")
"""


def run_killer(scene: Scene, word: str, n: int, phase: str = "cutover", mode: str = "kill",
               key: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", KILLER, word, str(n), mode, scene.top,
                           phase, str(key) if key else "-"],
                          capture_output=True, text=True, check=False)


def initial(scene: Scene, key: Path) -> None:
    done = encroot(f"encrypt --phase initial -o keyformat=hex -o keylocation=file://{key} "
                   f"'{scene.top}'")
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The new tree's hex key, at one path for the whole module (the saved pools name it)."""
    path = tmp_path_factory.mktemp("convert-key") / "k"
    path.write_text(HEX_1)
    return path


@pytest.fixture(scope="module")
def saved_tree(module_make_pool: PoolMaker, tmp_path_factory: pytest.TempPathFactory
               ) -> SavedPool:
    """The unencrypted test tree of test_convert, built once and saved."""
    pool = module_make_pool()
    build_tree(pool, tmp_path_factory.mktemp("tree"))
    return module_make_pool.save(pool)


@pytest.fixture(scope="module")
def saved_after_initial(module_make_pool: PoolMaker, saved_tree: SavedPool, key: Path
                        ) -> SavedPool:
    """The saved tree after ``encroot encrypt --phase initial``, saved again."""
    pool = module_make_pool.restore(saved_tree)
    initial(Scene(pool, f"{pool}/my data", key.parent), key)
    return module_make_pool.save(pool)


@pytest.fixture
def fresh(make_pool: PoolMaker, saved_tree: SavedPool, tmp_path: Path) -> Scene:
    """A copy of the saved tree, nothing converted yet."""
    pool = make_pool.restore(saved_tree)
    return Scene(pool, f"{pool}/my data", tmp_path)


@pytest.fixture
def staged(make_pool: PoolMaker, saved_after_initial: SavedPool, tmp_path: Path) -> Scene:
    """A copy of the saved tree with the initial phase done."""
    pool = make_pool.restore(saved_after_initial)
    return Scene(pool, f"{pool}/my data", tmp_path)


def outcome(scene: Scene, snaps: dict[str, str], files: dict[str, dict[str, str]]) -> str:
    """'old' or 'new': which complete tree is under the name (and nothing else is left)."""
    leftovers = [n for n in names_under(scene.pool) if ".encroot-convert" in n]
    assert leftovers == [], leftovers
    assert {k: v for k, v in snapshot_state(scene).items() if k in snaps} == snaps
    assert file_state(scene) == files
    return "old" if prop(scene.top, "encryption") == "off" else "new"


# (word in the command's shell line, occurrence, what --recover must leave)
KILL_POINTS = [
    ("unmount", 2, "old"),                              # one file system already unmounted
    ("snapshot", 1, "old"),                             # the whole tree unmounted
    ("receive", 3, "old"),                              # between two last incrementals
    ('"role":"verified"', 1, "old"),                    # verified, not yet marked
    ("encroot:convert-replaced", 1, "new"),             # marked verified, nothing renamed
    ("rename", 2, "new"),                               # between the two renames
    ("destroy", 1, "new"),                              # swapped, mounted, old not destroyed
]


@pytest.mark.parametrize(("word", "n", "expected"), KILL_POINTS,
                         ids=[f"{w}-{n}" for w, n, _ in KILL_POINTS])
def test_sigkill_at_cutover_then_recover(staged: Scene, word: str, n: int,
                                         expected: str) -> None:
    scene = staged
    snaps, files = snapshot_state(scene), file_state(scene)
    killed = run_killer(scene, word, n)
    assert killed.returncode == -9, killed.stdout + killed.stderr
    recovered = encroot(f"encrypt --recover '{scene.top}'")
    assert recovered.returncode == 0, recovered.stderr
    assert outcome(scene, snaps, files) == expected
    again = encroot(f"encrypt --recover '{scene.top}'")
    assert "nothing to recover" in again.stdout, again.stdout


def test_a_cut_stream_in_the_initial_phase_is_resumed_by_the_next_run(fresh: Scene, key: Path
                                                                      ) -> None:
    scene = fresh
    cut = run_killer(scene, "child one@", 1, "initial", "cut", key)
    assert cut.returncode == 1 and "Traceback" in cut.stderr, cut.stderr
    partial = f"{scene.top}.encroot-convert/child one"
    assert sh(f"zfs get -H -o value receive_resume_token '{partial}'").stdout.strip() != "-"
    initial(scene, key)  # the same phase again: resumes, then goes on
    snaps, files = snapshot_state(scene), file_state(scene)
    done = encroot(f"encrypt --phase cutover '{scene.top}'")
    assert done.returncode == 0, done.stderr
    assert outcome(scene, snaps, files) == "new"


def cutover_is_new(scene: Scene) -> None:
    """Cutover after the writes so far; the new tree carries them all."""
    snaps, files = snapshot_state(scene), file_state(scene)
    done = encroot(f"encrypt --phase cutover '{scene.top}'")
    assert done.returncode == 0, done.stderr
    assert outcome(scene, snaps, files) == "new"


def old_tree_untouched(scene: Scene, files: dict[str, dict[str, str]]) -> None:
    assert prop(scene.top, "encryption") == "off"
    assert prop(scene.top, "mounted") == "yes"
    assert file_state(scene) == files


def test_sigkill_in_the_initial_phase_then_the_phase_again(fresh: Scene, key: Path) -> None:
    scene = fresh
    files = file_state(scene)
    killed = run_killer(scene, "receive", 2, "initial", "kill", key)  # one dataset received
    assert killed.returncode == -9, killed.stdout + killed.stderr
    old_tree_untouched(scene, files)
    initial(scene, key)
    sh(f"echo three > '/{scene.top}/f3' && sync")
    cutover_is_new(scene)


def test_sigkill_in_catch_up_then_catch_up_again(staged: Scene) -> None:
    scene = staged
    sh(f"echo three > '/{scene.top}/child one/f3' && sync")
    files = file_state(scene)
    killed = run_killer(scene, "receive", 2, "catch-up", "kill")
    assert killed.returncode == -9, killed.stdout + killed.stderr
    old_tree_untouched(scene, files)
    again = encroot(f"encrypt --phase catch-up '{scene.top}'")
    assert again.returncode == 0, again.stderr
    cutover_is_new(scene)


def test_a_full_pool_in_the_initial_phase_fails_cleanly_then_resumes(fresh: Scene, key: Path
                                                                      ) -> None:
    scene = fresh
    files = file_state(scene)
    full = run_killer(scene, "child one@", 1, "initial", "fill", key)
    assert full.returncode == 1, full.stdout + full.stderr
    assert "space" in full.stderr.lower(), full.stderr
    old_tree_untouched(scene, files)
    sh(f"zfs destroy '{scene.pool}/filler'")
    initial(scene, key)  # the same phase again continues from what ZFS shows
    cutover_is_new(scene)
