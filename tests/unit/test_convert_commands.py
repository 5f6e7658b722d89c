"""The conversion executor and its recovery through the command layer: which zfs commands.

``tests/data/convert-commands.json`` holds, for each scenario below, every command the
last operation of the scenario ran (reads included; ``< program HASH`` where a claim
program was stdin, the key's pipe as ``N< <secret>``), and its outcome, as recorded
with the executor from before the swap's steps carried their commands (issue 12,
item 4), and recorded again when the swap's reads left snapshots out (only those
reads' ``-t`` changed, and the swap's last move reads its trees once more with
their snapshots), and again when a catch-up's dry run started at the last goal
(``-R -I``; only those lines changed).  Then every state-changing command of a
cutover is a kill point: ``--recover`` afterwards leaves either the old tree or
the new one, whole, in place.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest

from encroot.convert import ConvertRequest, convert, recover
from encroot.errors import EncrootError
from encroot.keys import Key
from encroot.names import DatasetName
from encroot.owned import Owner
from encroot.zfs import Zfs
from encroot.zfs.testing import FaultInjector, Killed, RecordingRunner

from .fakes import BINARIES
from .recorded import Recording, command_lines, outcome, with_stdin
from .test_convert_run import HEX, TOP, FakeZfs, tree

FIXED = Owner(host="host", boot_id="boot", pid=1, start="1")  # dead: nobody holds it
NOW = 1_800_000_000.0
ENCRYPT = ConvertRequest("encrypt", TOP, keyformat="hex")
KEEP = DatasetName("tank/kept copy")


def _zfs(fake: FakeZfs, kill_before: int | None = None,
         fail: dict[int, str] | None = None) -> tuple[Zfs, RecordingRunner]:
    runner = RecordingRunner(fake)
    fake.runner = runner
    inner = runner if kill_before is None and not fail else \
        FaultInjector(runner, kill_before=kill_before, fail=fail or {})
    return Zfs(runner=inner, binaries=BINARIES), runner


def _phase(fake: FakeZfs, phase: str, **options: object) -> None:
    request = ConvertRequest("encrypt", TOP, keyformat="hex", phase=phase,
                             **options)  # type: ignore[arg-type]
    with Key.hex(HEX) as key:
        convert(_zfs(fake)[0], request, key=key)


def _after_initial(**options: object) -> FakeZfs:
    fake = tree()
    _phase(fake, "initial", **options)
    return fake


def _killed_cutover(kill_before: int) -> FakeZfs:
    fake = _after_initial()
    with pytest.raises(Killed):
        convert(_zfs(fake, kill_before)[0], ConvertRequest("encrypt", TOP, phase="cutover"),
                key=None)
    return fake


# name -> (the world before, the operation whose commands are recorded)
Operation = Callable[[Zfs], object]
SCENARIOS: dict[str, tuple[Callable[[], FakeZfs], Operation]] = {
    "encrypt-all-phases": (tree, lambda zfs: _with_key(zfs, ENCRYPT)),
    "catch-up": (_after_initial, lambda zfs: convert(
        zfs, ConvertRequest("encrypt", TOP, phase="catch-up"), key=None)),
    "cutover": (_after_initial, lambda zfs: convert(
        zfs, ConvertRequest("encrypt", TOP, phase="cutover"), key=None)),
    "cutover-keep-old": (_after_initial, lambda zfs: convert(
        zfs, ConvertRequest("encrypt", TOP, phase="cutover", keep_old=KEEP), key=None)),
    "recover-before-verified": (lambda: _killed_cutover(4),
                                lambda zfs: recover(zfs, ENCRYPT)),
    "recover-after-verified": (lambda: _killed_cutover(8),
                               lambda zfs: recover(zfs, ENCRYPT)),
    "recover-between-renames": (lambda: _killed_cutover(10),
                                lambda zfs: recover(zfs, ENCRYPT)),
}


def _with_key(zfs: Zfs, request: ConvertRequest) -> object:
    with Key.hex(HEX) as key:
        return convert(zfs, request, key=key)


def _fixed(patch: pytest.MonkeyPatch) -> None:
    patch.setattr(Owner, "current", classmethod(lambda cls: FIXED))
    patch.setattr(time, "time", lambda: NOW)


@pytest.fixture(autouse=True)
def _fixed_owner_and_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    _fixed(monkeypatch)


def _line(command_line: str, stdin: bytes | None, secret: bool) -> str:
    line = re.sub(r"/dev/fd/\d+", "/dev/fd/N", command_line)
    return with_stdin(re.sub(r" \d+< <secret>", " N< <secret>", line), stdin, secret)


def run(name: str) -> tuple[FakeZfs, list[str]]:
    before, operation = SCENARIOS[name]
    fake = before()
    zfs, runner = _zfs(fake)
    done = outcome(lambda: operation(zfs))
    return fake, [*command_lines(runner, _line), done]


RECORDED = Recording("convert-commands.json", SCENARIOS, lambda name: run(name)[1], _fixed)


@pytest.mark.parametrize("name", RECORDED.names())
def test_the_zfs_commands_are_those_recorded_before_steps_carried_commands(name: str
                                                                          ) -> None:
    RECORDED.check(name)


if __name__ == "__main__":
    RECORDED.write()


# -- a cutover killed anywhere, then --recover ---------------------------------------------

def _cutover_changes() -> int:
    """How many state-changing commands a cutover runs (the fault injector's count)."""
    fake = _after_initial()
    runner = RecordingRunner(fake)
    fake.runner = runner
    counting = FaultInjector(runner)
    convert(Zfs(runner=counting, binaries=BINARIES),
            ConvertRequest("encrypt", TOP, phase="cutover"), key=None)
    return counting.changes


def _whole(fake: FakeZfs) -> str:
    """"old" or "new": the tree in place, mounted, holds kept, nothing of encroot's left."""
    names = [n for n in fake.datasets if "encroot-convert" in n.split("@")[0]]
    assert names == [], names
    assert not any(p.startswith("encroot:") for props in fake.datasets.values() for p in props)
    assert fake.datasets[TOP]["mounted"] == fake.datasets[f"{TOP}/c"]["mounted"] == "yes"
    assert fake.datasets[f"{TOP}/c"]["mountpoint"] == "/srv/c"
    assert fake.holds[f"{TOP}@s1"] == ["keep"]
    return "new" if fake.datasets[TOP]["encryption"] != "off" else "old"


def test_a_cutover_killed_before_any_command_is_recovered_to_one_whole_tree() -> None:
    total = _cutover_changes()
    seen = []
    for kill_before in range(1, total + 1):
        fake = _killed_cutover(kill_before)
        recover(_zfs(fake)[0], ENCRYPT)
        seen.append(_whole(fake))
    assert seen[0] == "old" and seen[-1] == "new"
    assert seen == sorted(seen, key=["old", "new"].index)  # once new, never old again


def test_a_busy_rename_leaves_the_verified_tree_for_recover() -> None:
    fake = _after_initial()
    busy = "cannot rename 'tank/my data': dataset is busy"
    zfs, _ = _zfs(fake, fail={9: busy})
    with pytest.raises(EncrootError, match="dataset is busy"):
        convert(zfs, ConvertRequest("encrypt", TOP, phase="cutover"), key=None)
    recover(_zfs(fake)[0], ENCRYPT)
    assert _whole(fake) == "new"
