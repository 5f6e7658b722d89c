"""Concurrent encroot runs on real OpenZFS (issue 12, item 2).

A zfs wrapper (through ``ENCROOT_ZFS``) holds one run at a chosen zfs command until
the test lets it go, so the other runs meet its state at a known point:

* a migrate phase held at its ``zfs receive``: a second run of the phase, a cutover
  and ``doctor --fix`` refuse the destination with the holder's pid, change nothing,
  and the held phase then completes;
* two migrate phases held just before their ownership claims and let go together:
  the claim is a compare-and-set in one channel program, so exactly one goes on;
* a batch rotation held at its first ``zfs change-key``, its journal written:
  ``encroot recover``, ``encroot get``, a second ``encroot change-key`` and
  ``doctor --fix`` refuse it, and the batch then completes.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from encroot import Key

from .conftest import PoolFactory
from .helpers import PASSPHRASE, encroot, prop, sh, snapshot_guids, write_files
from .test_migrate import DST_PASSPHRASE, cutover_args, passphrase_pool
from .test_rotate import fresh_key, key_is, make_root

pytestmark = pytest.mark.zfs


def holder(folder: Path, condition: str) -> Path:
    """A zfs wrapper: a call matching ``condition`` (a shell test on the arguments)
    writes ``waiting-PID`` and waits for ``go``; everything else is zfs itself."""
    real = sh("command -v zfs").stdout.strip()
    script = folder / "zfs"
    script.write_text(f"""#!/bin/bash
if {condition} && [ ! -e {folder}/go ]; then
  touch {folder}/waiting-$$
  while [ ! -e {folder}/go ]; do sleep 0.05; done
fi
exec {real} "$@"
""")
    script.chmod(0o755)
    return script


def start(wrapper: Path, args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(["bash", "-c", f"ENCROOT_ZFS={wrapper} exec encroot {args}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_waiters(folder: Path, count: int, runs: list[subprocess.Popen[str]]) -> None:
    deadline = time.monotonic() + 180
    while len(list(folder.glob("waiting-*"))) < count:
        for run in runs:
            assert run.poll() is None, run.communicate()
        assert time.monotonic() < deadline, f"fewer than {count} runs reached the held call"
        time.sleep(0.1)


def let_go(folder: Path, *runs: subprocess.Popen[str]) -> list[tuple[int, str, str]]:
    (folder / "go").touch()
    ended = []
    for run in runs:
        out, err = run.communicate(timeout=900)
        ended.append((run.returncode, out, err))
    return ended


def migration_pair(make_pool: PoolFactory, folder: Path) -> tuple[str, str, Path, Path]:
    """A passphrase-rooted SRC with a child holding a file and a snapshot; an encrypted DST."""
    source = passphrase_pool(make_pool, PASSPHRASE)
    destination = passphrase_pool(make_pool, DST_PASSPHRASE)
    sh(f"zfs create {source}/data")
    write_files(prop(f"{source}/data", "mountpoint"), {"f.bin": os.urandom(200_000)})
    sh(f"zfs snapshot -r {source}@s1")
    source_key, destination_key = folder / "src.key", folder / "dst.key"
    source_key.write_text(PASSPHRASE)
    destination_key.write_text(DST_PASSPHRASE)
    return source, destination, source_key, destination_key


def staged_guids(source: str, destination: str) -> tuple[dict[str, str], dict[str, str]]:
    return snapshot_guids(source), snapshot_guids(f"{destination}/encroot-migrate")


def test_a_held_migrate_phase_is_refused_by_a_second_run_a_cutover_and_doctor_fix(
        make_pool: PoolFactory, tmp_path: Path) -> None:
    source, destination, source_key, destination_key = migration_pair(make_pool, tmp_path)
    first = start(holder(tmp_path, '[ "$1" = receive ]'),
                  f"migrate --phase initial {source} {destination}")
    wait_for_waiters(tmp_path, 1, [first])
    marker = json.loads(prop(destination, "encroot:migrate"))
    pid = marker["owner"]["pid"]
    assert pid == first.pid and marker["data"]["phase"] == "initial"
    held = f"{destination} is held by encroot pid {pid} on this host"

    second = encroot(f"migrate --phase initial {source} {destination}")
    assert second.returncode == 1 and held in second.stderr, second.stderr
    cutover = encroot(f"migrate --phase cutover {cutover_args(source_key, destination_key)} "
                      f"{source} {destination}")
    assert cutover.returncode == 1 and held in cutover.stderr, cutover.stderr
    fixed = encroot(f"doctor --fix --json {destination}")
    document = json.loads(fixed.stdout)
    assert document["fixes"] == [], document["fixes"]
    assert any(n["code"] == "operation-in-progress"
               and n["reason"].startswith(f"owner alive: encroot pid {pid}")
               for n in document["not_repaired"]), document["not_repaired"]
    assert json.loads(prop(destination, "encroot:migrate")) == marker
    assert first.poll() is None, "the held phase ended before the checks were done"

    [(code, _, err)] = let_go(tmp_path, first)
    assert code == 0, err
    source_guids, staged = staged_guids(source, destination)
    assert staged == source_guids and staged
    assert prop(destination, "encroot:migrate") == "-"


@pytest.mark.all_versions
def test_two_migrate_phases_racing_for_one_destination_one_goes_on(
        make_pool: PoolFactory, tmp_path: Path) -> None:
    source, destination, _, _ = migration_pair(make_pool, tmp_path)
    wrapper = holder(tmp_path, '[ "$1" = program ]')  # the claim: migrate's only program
    args = f"migrate --phase initial {source} {destination}"
    runs = [start(wrapper, args), start(wrapper, args)]
    wait_for_waiters(tmp_path, 2, runs)
    assert prop(destination, "encroot:migrate") == "-"  # neither has claimed yet

    ended = let_go(tmp_path, *runs)
    codes = sorted(code for code, _, _ in ended)
    assert codes == [0, 1], ended
    winner = runs[[code for code, _, _ in ended].index(0)]
    loser_err = next(err for code, _, err in ended if code == 1)
    assert f"{destination} is held by encroot pid {winner.pid}" in loser_err \
        or "changed while encroot was planning" in loser_err, loser_err
    source_guids, staged = staged_guids(source, destination)
    assert staged == source_guids and staged
    assert prop(destination, "encroot:migrate") == "-"


def test_a_held_batch_rotation_is_refused_by_recover_get_change_key_and_doctor_fix(
        make_pool: PoolFactory, tmp_path: Path) -> None:
    pool = make_pool(size="256M")
    names, keys = [], {}
    for _ in range(2):
        with fresh_key("hex") as old:
            names.append(make_root(pool, old, **{"oxide:epoch": "1"}))
        keys[names[-1]] = tmp_path / f"new-{len(names)}.key"
        keys[names[-1]].write_text(os.urandom(32).hex())
    files = " ".join(f"--key-file {keys[n]}" for n in names)
    # Not the capability probe (`zfs change-key -o atime=on`, which zfs refuses): the
    # first real change-key comes after the journal.
    first = start(holder(tmp_path, '[ "$1" = change-key ] && [ "$3" != atime=on ]'),
                  f"change-key -o oxide:epoch=2 {files} {' '.join(names)}")
    wait_for_waiters(tmp_path, 1, [first])
    journals = [json.loads(prop(n, "encroot:rotation")) for n in names]
    assert {j["owner"]["pid"] for j in journals} == {first.pid}, journals
    held = f"is held by encroot pid {first.pid} on this host"

    for command in (f"recover {names[0]}", f"get {names[1]}",
                    f"change-key -o oxide:epoch=3 --key-file {keys[names[1]]} {names[1]}"):
        refused = encroot(command)
        assert refused.returncode == 1 and held in refused.stderr, (command, refused.stderr)
    fixed = encroot(f"doctor --fix --json {pool}")
    document = json.loads(fixed.stdout)
    assert document["fixes"] == [], document["fixes"]
    assert [json.loads(prop(n, "encroot:rotation")) for n in names] == journals
    assert first.poll() is None, "the held rotation ended before the checks were done"

    [(code, _, err)] = let_go(tmp_path, first)
    assert code == 0, err
    for name in names:
        assert prop(name, "oxide:epoch") == "2" and prop(name, "encroot:rotation") == "-"
        with Key.hex(keys[name].read_text()) as key:
            assert key_is(name, key)
