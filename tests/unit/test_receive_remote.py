"""``encroot receive`` into a dataset on another host: the library through a remote ``Zfs``.

Every read and step runs over ssh (``Command.remote``), the stream is relayed into
``ssh HOST zfs receive``, the markers name this process, a marker of another host's
encroot holds until ``take_over`` names that host, and the wait for an orphan receive
lists the remote host's processes (one ``grep -a`` over ssh).
"""

from __future__ import annotations

import os
import shlex

import pytest

from encroot.errors import RemoteHostKey
from encroot.names import DatasetName
from encroot.owned import RECV_VERIFIED, Owner, ReceiveInProgress, dumps
from encroot.receive import (
    Orphan,
    ReceiveRefused,
    ReceiveRequest,
    orphan_receives,
    receive_stream,
    recover,
)
from encroot.stream import parse_header
from encroot.zfs import Command, Zfs
from encroot.zfs.masters import SshMasters
from encroot.zfs.remote import parse_cmdline_matches
from encroot.zfs.testing import RecordingRunner, Responder

from .fakes import ReceivingWorld, filesystem
from .test_receive_run import stream_bytes

TARGET = "dst/fs"
TEMP = f"{TARGET}.encroot-recv"
ME = Owner.current()
DEAD_HERE = Owner(host=ME.host, boot_id="an earlier boot", pid=1, start="1")
THERE = Owner(host="0123456789abcdef", boot_id="b", pid=77, start="5")


def remote_zfs(respond: Responder, *, master: tuple[int, str] = (0, "")
               ) -> tuple[Zfs, RecordingRunner, SshMasters]:
    def spawn(argv: list[str]) -> tuple[int, str]:
        return master if "ControlMaster=yes" in argv else (0, "")

    masters = SshMasters(spawn=spawn)
    runner = RecordingRunner(respond)
    return Zfs(runner=runner, masters=masters,
               remote=masters.target("backup@nas", "backup@nas")), runner, masters


def world(temp_owner: Owner | None = None) -> ReceivingWorld:
    datasets = {"dst": filesystem(), TARGET: filesystem(mounted="yes")}
    local: dict[str, set[str]] = {}
    if temp_owner is not None:
        marker = dumps(ReceiveInProgress(target=TARGET, owner=temp_owner))
        datasets[TEMP] = {**filesystem(), RECV_VERIFIED: marker}
        local[TEMP] = {RECV_VERIFIED}
    data = stream_bytes("raw-full")
    return ReceivingWorld(datasets, local, stream=parse_header(data))


def answer_with(fake: ReceivingWorld, processes: str = "") -> Responder:
    """The world's answers, and ``processes`` as the remote ``grep`` of /proc's output."""
    def respond(command: Command) -> tuple[int, str, str]:
        if command.argv[:2] == ("sh", "-c"):
            return 0, processes, ""
        return fake(command)
    return respond


def request(**options: object) -> ReceiveRequest:
    return ReceiveRequest(DatasetName(TARGET), force=True, no_mount=True,
                          allow_encryption_change=True, **options)  # type: ignore[arg-type]


def run_receive(zfs: Zfs, **options: object) -> None:
    read, write = os.pipe()
    os.write(write, stream_bytes("raw-full"))
    os.close(write)
    try:
        receive_stream(zfs, request(), read, **options)  # type: ignore[arg-type]
    finally:
        os.close(read)


def test_every_step_runs_over_ssh_and_the_stream_is_relayed_into_the_remote_receive() -> None:
    fake = world()
    zfs, runner, masters = remote_zfs(answer_with(fake))
    run_receive(zfs)
    masters.close()
    assert all(c.remote is not None and c.process_argv[0] == "ssh" for c, _ in runner.calls)
    received = [(c, fd) for (c, _), fd in zip(runner.calls, runner.stdin_fds, strict=True)
                if c.argv[1:2] == ("receive",)]
    (command, fd), = received
    assert fd is not None  # relayed from encroot's stdin
    assert command.argv[0] == "zfs" and command.argv[-1] == TEMP
    marker = dumps(ReceiveInProgress(target=TARGET, owner=ME))
    assert f"{RECV_VERIFIED}={marker}" in command.argv  # the markers name this process
    words = shlex.split(command.shell_line())
    assert words[:3] == ["ssh", "-o", "BatchMode=yes"] and words[-2] == "backup@nas"
    assert shlex.split(words[-1])[-1] == TEMP
    assert fake.datasets[TARGET]["encryption"] == "aes-256-gcm"  # replaced, there
    assert TEMP not in fake.datasets and f"{TARGET}.encroot-old" not in fake.datasets


def test_the_orphan_wait_lists_the_remote_hosts_processes() -> None:
    fake = world()
    zfs, runner, masters = remote_zfs(answer_with(fake))
    run_receive(zfs)
    masters.close()
    scans = [c for c, _ in runner.calls if c.argv[:2] == ("sh", "-c")]
    assert len(scans) == 1 and scans[0].remote is not None
    assert shlex.split(scans[0].argv[2])[:6] == ["grep", "-a", "-H", "-s", "-F", "-e"]
    assert f"{RECV_VERIFIED}=" in scans[0].argv[2]


def test_a_marker_of_another_hosts_encroot_holds_until_take_over_names_it() -> None:
    fake = world(temp_owner=THERE)
    zfs, runner, masters = remote_zfs(answer_with(fake))
    with pytest.raises(ReceiveRefused, match=f"--take-over {THERE.host}") as caught:
        recover(zfs, DatasetName(TARGET))
    assert f"on host {THERE.host}" in str(caught.value)
    assert not any(c.mutates for c, _ in runner.calls) and TEMP in fake.datasets
    with pytest.raises(ReceiveRefused, match="--take-over"):
        recover(zfs, DatasetName(TARGET), take_over="some other host")
    report = recover(zfs, DatasetName(TARGET), take_over=THERE.host)
    masters.close()
    assert report.actions == [f"destroy the unfinished temporary {TEMP}"]
    assert TEMP not in fake.datasets
    assert [c.argv[1:] for c, _ in runner.calls if c.mutates] == [("destroy", "-r", TEMP)]


def test_a_receive_refuses_a_foreign_marker_before_reading_the_stream_further() -> None:
    fake = world(temp_owner=THERE)
    zfs, runner, masters = remote_zfs(answer_with(fake))
    with pytest.raises(ReceiveRefused, match="--take-over"):
        run_receive(zfs)
    assert not any(c.mutates for c, _ in runner.calls)
    run_receive(zfs, take_over=THERE.host)
    masters.close()
    assert fake.datasets[TARGET]["encryption"] == "aes-256-gcm"


def test_recovery_of_a_dead_local_run_on_a_remote_target() -> None:
    """What a SIGKILL of this host's encroot leaves there: its temporary, marked by it."""
    fake = world(temp_owner=DEAD_HERE)
    zfs, runner, masters = remote_zfs(answer_with(fake))
    report = recover(zfs, DatasetName(TARGET))
    again = recover(zfs, DatasetName(TARGET))
    masters.close()
    assert report.actions == [f"destroy the unfinished temporary {TEMP}"]
    assert again.actions == []
    assert fake.datasets[TARGET]["mounted"] == "yes"  # the old target, untouched
    assert all(c.remote is not None for c, _ in runner.calls)


def test_recovery_waits_for_a_remote_orphan_receive() -> None:
    fake = world(temp_owner=DEAD_HERE)
    argument = f"{RECV_VERIFIED}={dumps(ReceiveInProgress(target=TARGET, owner=DEAD_HERE))}"
    listings = [f"/proc/4242/cmdline:zfs\0receive\0-u\0-o\0{argument}\0{TEMP}\0\n", ""]
    said: list[str] = []

    def respond(command: Command) -> tuple[int, str, str]:
        if command.argv[:2] == ("sh", "-c"):
            return 0, listings.pop(0) if len(listings) > 1 else listings[0], ""
        return fake(command)

    zfs, _, masters = remote_zfs(respond)
    recover(zfs, DatasetName(TARGET), say=said.append)
    masters.close()
    assert any("waiting for zfs receive pid 4242" in line for line in said)


def test_cmdline_matches_are_read_from_grep_lines() -> None:
    prefix = f"{RECV_VERIFIED}="
    output = (f"/proc/12/cmdline:zfs\0receive\0-o\0{prefix}{{}}\0x\0\n"
              f"/proc/13/cmdline:grep\0-a\0-e\0{prefix}\0/proc/1/cmdline\0\n"
              "garbage line\n/proc/x/cmdline:a\0\n")
    assert parse_cmdline_matches(output, prefix) == [(12, f"{prefix}{{}}"), (13, prefix)]


def test_orphans_of_another_hosts_encroot_count_only_when_taken_over() -> None:
    def argument(owner: Owner) -> str:
        return f"{RECV_VERIFIED}={dumps(ReceiveInProgress(target=TARGET, owner=owner))}"

    found = [(11, argument(DEAD_HERE)), (12, argument(THERE))]
    assert orphan_receives(TARGET, found) == [Orphan(11, DEAD_HERE)]
    assert orphan_receives(TARGET, found, take_over=THERE.host) == [
        Orphan(11, DEAD_HERE), Orphan(12, THERE)]


def test_a_host_key_refusal_changes_nothing_and_names_the_host() -> None:
    fake = world()
    zfs, runner, masters = remote_zfs(answer_with(fake),
                                      master=(255, "Host key verification failed.\n"))
    with pytest.raises(RemoteHostKey, match=r"^backup@nas: its ssh host key"):
        run_receive(zfs)
    masters.close()
    assert runner.calls == []
