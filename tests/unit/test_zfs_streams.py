"""Send/receive pipelines in the command layer: argv building, errors, and the relay."""

from __future__ import annotations

import pytest

from encroot.errors import DatasetExists, InvalidProperty, ZfsError
from encroot.zfs import Command, SendSpec, SubprocessRunner

from .fakes import make_zfs


def test_transfer_builds_a_raw_replication_pipeline() -> None:
    zfs, runner = make_zfs()
    zfs.transfer(SendSpec("src/a@s2", base="src/a@s1", replicate=True), "dst/a")
    assert runner.argvs == [("/sbin/zfs", "send", "-w", "-R", "-I", "src/a@s1", "src/a@s2"),
                            ("/sbin/zfs", "receive", "-u", "-s", "dst/a")]


def test_transfer_resumes_from_a_token_and_checks_its_shape() -> None:
    zfs, runner = make_zfs()
    zfs.transfer(SendSpec(resume_token="1-abc123-d0-789c"), "dst/a")
    assert runner.argvs[0] == ("/sbin/zfs", "send", "-t", "1-abc123-d0-789c")
    with pytest.raises(InvalidProperty, match="resume token"):
        zfs.transfer(SendSpec(resume_token="-R everything"), "dst/a")


def test_a_dry_run_records_both_commands_and_runs_neither() -> None:
    zfs, runner = make_zfs(dry_run=True)
    zfs.transfer(SendSpec("src/a@s1"), "dst/a")
    assert runner.argvs == []
    assert [c.argv[1] for c in zfs.planned] == ["send", "receive"]


def test_a_failed_receive_raises_its_typed_error_with_zfs_message() -> None:
    def respond(command: Command) -> tuple[int, str, str]:
        if command.argv[1] == "receive":
            return 1, "", "cannot receive new filesystem stream: destination already exists\n"
        return 0, "", ""
    zfs, _ = make_zfs(respond)
    with pytest.raises(DatasetExists, match="destination already exists"):
        zfs.transfer(SendSpec("src/a@s1"), "dst/a")


def test_a_failed_send_is_reported_when_the_receive_said_nothing() -> None:
    zfs, _ = make_zfs(lambda c: (1, "", "warning: cannot send 'src/a@s1': no such snapshot\n")
                      if c.argv[1] == "send" else (0, "", ""))
    with pytest.raises(ZfsError, match="zfs send failed: warning: cannot send"):
        zfs.transfer(SendSpec("src/a@s1"), "dst/a")


def test_send_size_reads_the_size_line_of_a_dry_run_send() -> None:
    zfs, runner = make_zfs(lambda c: (0, "full\tsrc/a@s1\t1234\nsize\t1234\n", ""))
    assert zfs.send_size(SendSpec("src/a@s1", replicate=True)) == 1234
    assert runner.argvs[0] == ("/sbin/zfs", "send", "-n", "-P", "-w", "-R", "src/a@s1")


def test_the_relay_moves_every_byte_and_counts_them() -> None:
    counted: list[int] = []
    sent, received = SubprocessRunner().pipe(
        Command(("head", "-c", "300000", "/dev/zero")), Command(("wc", "-c")),
        progress=counted.append)
    assert sent.ok and received.ok
    assert received.stdout.strip() == "300000" and sum(counted) == 300_000


def test_a_receiver_that_stops_reading_ends_the_sender() -> None:
    sent, received = SubprocessRunner().pipe(Command(("yes",)), Command(("head", "-c", "10")))
    assert received.ok and received.stdout == "y\n" * 5
    assert not sent.ok  # killed (or SIGPIPE): it never runs on alone
