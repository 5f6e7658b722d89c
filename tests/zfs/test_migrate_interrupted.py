"""encroot migrate interrupted in each phase (cut stream, SIGKILL), then run again.

A wrapper put in place of ``zfs`` (through ``ENCROOT_ZFS``) interrupts the
first real ``zfs send`` after a number of bytes, either by ending the
stream (a cut stream: the receive fails) or by also killing encroot with
SIGKILL; other points kill encroot right after its first ``zfs change-key
-i`` or its first ``zfs rename`` (a tree moved out of the staging, the
others not).  Running the same phase again must continue from what ZFS shows and
end, after cutover, with exactly the result of an uninterrupted migration.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .helpers import encroot, names_under, prop, sh
from .test_migrate import (
    assert_migrated,
    cutover_args,
    initially_migrated,
    pools,
    saved_after_initial,
    saved_pools,
    write,
)

pytestmark = pytest.mark.zfs
# the fixtures, shared with test_migrate (each module builds and saves its own pair)
__all__ = ["initially_migrated", "pools", "saved_after_initial", "saved_pools"]

CUT_AFTER_BYTES = 120_000


def interrupter(folder: Path, how: str, pool: str = "") -> Path:
    """A zfs wrapper: ``cut`` or ``kill`` the first send, ``fill`` ``pool`` just before it
    (a reservation takes all but 128 KiB), or ``kill-after-change-key`` (-i) or
    ``kill-after-rename``."""
    real = sh("command -v zfs").stdout.strip()
    once = folder / "interrupted"
    if how == "fill":
        trigger = f'[ "$1" = send ] && [ "$2" != -n ] && [ ! -e {once} ]'
        action = (f'touch {once}; free=$({real} get -H -p -o value available {pool}); '
                  f'{real} create -o refreservation=$((free - 131072)) {pool}/filler; '
                  f'exec {real} "$@"')
    elif how.startswith("kill-after-"):
        command = how.removeprefix("kill-after-")
        option = ' && [ "$2" = -i ]' if command == "change-key" else ""
        trigger = f'[ "$1" = {command} ]{option} && [ ! -e {once} ]'
        action = f'{real} "$@"; touch {once}; kill -9 $PPID; exit 137'
    else:
        trigger = f'[ "$1" = send ] && [ "$2" != -n ] && [ ! -e {once} ]'
        # The kill waits three seconds so that encroot has relayed every byte head let
        # through (it waits for more, the pipe being open): under a loaded emulator it
        # lags. One second was once too short on a slow day: the receive had too little
        # to leave a partial state (a CI run of 2026-12-03).
        action = (f'touch {once}; {real} "$@" | head -c {CUT_AFTER_BYTES}; '
                  + ("sleep 3; kill -9 $PPID; " if how == "kill" else "") + "exit 1")
    script = folder / "zfs"
    script.write_text(f"#!/bin/bash\nif {trigger}; then\n  {action}\nfi\nexec {real} \"$@\"\n")
    script.chmod(0o755)
    return script


def interrupted(folder: Path, how: str, args: str, pool: str = "") -> None:
    wrapper = interrupter(folder, how, pool)
    run = sh(f"ENCROOT_ZFS={wrapper} encroot migrate {args}", check=False)
    assert (folder / "interrupted").exists(), "the interruption point was never reached"
    expected = (-9, 137) if how.startswith("kill") else (1,)
    assert run.returncode in expected, (run.returncode, run.stderr)
    # A killed encroot leaves its zfs receive running until it reads the stream's end.
    # Only this process's pools count (their names start with t<pid>x; see conftest):
    # tests of other modules may run beside this one. "[z]fs" keeps the pattern from
    # matching the shell that runs pgrep.
    sh(f"for i in $(seq 120); do pgrep -f '[z]fs .*t{os.getpid()}x' >/dev/null || exit 0; "
       "sleep 0.5; done; exit 1")


def partial_receives(destination: str) -> list[str]:
    out = sh(f"zfs get -H -o name,value -r receive_resume_token {destination}").stdout
    return [line.split("\t")[0] for line in out.splitlines() if not line.endswith("\t-")]


def cutover_and_check(source: str, destination: str, source_key: Path,
                      destination_key: Path) -> None:
    done = encroot(f"migrate --phase cutover {cutover_args(source_key, destination_key)} "
                   f"{source} {destination}")
    assert done.returncode == 0, done.stderr
    assert_migrated(source, destination)


def big_write(source: str) -> None:
    write(source, {"data/a": {"big.bin": os.urandom(300_000).hex()}})


def test_initial_killed_mid_stream_continues(pools: tuple[str, str, Path, Path],
                                             tmp_path: Path) -> None:
    source, destination, source_key, destination_key = pools
    interrupted(tmp_path, "kill", f"--phase initial {source} {destination}")
    assert partial_receives(destination), "the cut left no partial receive to resume"
    before = set(names_under(source))
    again = encroot(f"migrate --phase initial {source} {destination}")
    assert again.returncode == 0, again.stderr
    assert not partial_receives(destination)
    assert set(names_under(source)) - before <= {n for n in names_under(source) if "@" in n}
    cutover_and_check(source, destination, source_key, destination_key)


@pytest.mark.all_versions
def test_catch_up_with_a_cut_stream_continues(
        initially_migrated: tuple[str, str, Path, Path], tmp_path: Path) -> None:
    source, destination, source_key, destination_key = initially_migrated
    big_write(source)
    interrupted(tmp_path, "cut", f"--phase catch-up {source} {destination}")
    assert partial_receives(destination)
    again = encroot(f"migrate --phase catch-up {source} {destination}")
    assert again.returncode == 0, again.stderr
    cutover_and_check(source, destination, source_key, destination_key)


def test_cutover_with_a_cut_stream_continues(
        initially_migrated: tuple[str, str, Path, Path], tmp_path: Path) -> None:
    source, destination, source_key, destination_key = initially_migrated
    big_write(source)
    interrupted(tmp_path, "cut", f"--phase cutover {cutover_args(source_key, destination_key)} "
                f"{source} {destination}")
    assert prop(destination, "encroot:migrate") == "-", "re-parenting began after a cut stream"
    cutover_and_check(source, destination, source_key, destination_key)


@pytest.mark.parametrize("point", ["kill-after-change-key", "kill-after-rename"])
def test_cutover_killed_while_re_parenting_continues(
        initially_migrated: tuple[str, str, Path, Path], tmp_path: Path, point: str) -> None:
    source, destination, source_key, destination_key = initially_migrated
    interrupted(tmp_path, point,
                f"--phase cutover {cutover_args(source_key, destination_key)} "
                f"{source} {destination}")
    assert prop(destination, "encroot:migrate") != "-"
    refused = encroot(f"migrate --phase catch-up --root-data=dataset:rootdata "
                      f"{source} {destination}")
    assert refused.returncode == 1 and "12614" in refused.stderr
    cutover_and_check(source, destination, source_key, destination_key)


def test_initial_on_a_pool_that_fills_up_continues_once_space_is_freed(
        pools: tuple[str, str, Path, Path], tmp_path: Path) -> None:
    source, destination, source_key, destination_key = pools
    interrupted(tmp_path, "fill", f"--phase initial {source} {destination}", destination)
    failed_because = sh(f"zfs list -H -o name {destination}/filler").stdout.strip()
    assert failed_because == f"{destination}/filler"
    sh(f"zfs destroy {destination}/filler")
    again = encroot(f"migrate --phase initial {source} {destination}")
    assert again.returncode == 0, again.stderr
    cutover_and_check(source, destination, source_key, destination_key)
