"""Interrupting `encroot encrypt` loses nothing: a SIGKILL of encroot before chosen steps of
cutover (the unmount, the snapshot, a transfer, the verified mark, each rename, the
destroy), then `--recover`; and a stream cut in the initial phase, then the phase again.

After `--recover` exactly one complete tree is under the name: the old one (interrupted
before the new one was marked verified) or the new one (after), with every file and
snapshot, mounted, and no leftovers.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import PoolFactory
from .helpers import encroot, names_under, prop, sh
from .test_convert import HEX_1, Scene, build_tree, file_state, snapshot_state

pytestmark = pytest.mark.zfs

KILLER = """
import os, shlex, signal, sys
from encroot.convert import ConvertRequest, convert
from encroot.zfs import Command, SubprocessRunner, Zfs

class KillAt(SubprocessRunner):
    '''SIGKILL this process before the Nth state-changing command whose shell line
    contains WORD; with CUT, cut the stream of the first pipe into a matching target.'''
    def __init__(self, word, n, cut):
        super().__init__()
        self.word, self.n, self.cut, self.seen = word, n, cut, 0
    def _gate(self, command):
        if command.mutates and self.word in command.shell_line() and not self.cut:
            self.seen += 1
            if self.seen == self.n:
                os.kill(os.getpid(), signal.SIGKILL)
    def run(self, command, **kwargs):
        self._gate(command)
        return super().run(command, **kwargs)
    def pipe(self, sender, receiver, **kwargs):
        self._gate(receiver)
        if self.cut and self.word in sender.shell_line():
            self.seen += 1
            if self.seen == self.n:
                line = shlex.join(sender.argv) + " | head -c 30000"
                sender = Command(("bash", "-c", line))
        return super().pipe(sender, receiver, **kwargs)

word, n, cut = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "cut"
dataset, phase = sys.argv[4], sys.argv[5]
request = ConvertRequest("encrypt", dataset, phase=phase)
convert(Zfs(runner=KillAt(word, n, cut)), request, key=None)
print("completed")
"""


def run_killer(scene: Scene, word: str, n: int, phase: str = "cutover",
               cut: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", KILLER, word, str(n),
                           "cut" if cut else "kill", scene.top, phase],
                          capture_output=True, text=True, check=False)


def initial(scene: Scene, key: Path) -> None:
    done = encroot(f"encrypt --phase initial -o keyformat=hex -o keylocation=file://{key} "
                   f"'{scene.top}'")
    assert done.returncode == 0, done.stderr


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
def test_sigkill_at_cutover_then_recover(make_pool: PoolFactory, tmp_path: Path, word: str,
                                         n: int, expected: str) -> None:
    key = tmp_path / "k"
    key.write_text(HEX_1)
    scene = build_tree(make_pool(), tmp_path)
    initial(scene, key)
    snaps, files = snapshot_state(scene), file_state(scene)
    killed = run_killer(scene, word, n)
    assert killed.returncode == -9, killed.stdout + killed.stderr
    recovered = encroot(f"encrypt --recover '{scene.top}'")
    assert recovered.returncode == 0, recovered.stderr
    assert outcome(scene, snaps, files) == expected
    again = encroot(f"encrypt --recover '{scene.top}'")
    assert "nothing to recover" in again.stdout, again.stdout


def test_a_cut_stream_in_the_initial_phase_is_resumed_by_the_next_run(
        make_pool: PoolFactory, tmp_path: Path) -> None:
    key = tmp_path / "k"
    key.write_text(HEX_1)
    scene = build_tree(make_pool(), tmp_path)
    cut = subprocess.run([sys.executable, "-c", KILLER.replace(
        "request = ConvertRequest(\"encrypt\", dataset, phase=phase)",
        "from encroot.keys import Key\n"
        f"request = ConvertRequest('encrypt', dataset, phase=phase, keyformat='hex', "
        f"keylocation='file://{key}')").replace(
        "key=None", f"key=Key.from_file('{key}', 'hex')"),
        "child one@", "1", "cut", scene.top, "initial"], capture_output=True, text=True,
        check=False)
    assert cut.returncode == 1 and "Traceback" in cut.stderr, cut.stderr
    partial = f"{scene.top}.encroot-convert/child one"
    assert sh(f"zfs get -H -o value receive_resume_token '{partial}'").stdout.strip() != "-"
    initial(scene, key)  # the same phase again: resumes, then goes on
    snaps, files = snapshot_state(scene), file_state(scene)
    done = encroot(f"encrypt --phase cutover '{scene.top}'")
    assert done.returncode == 0, done.stderr
    assert outcome(scene, snaps, files) == "new"
