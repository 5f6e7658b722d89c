"""Send/receive pipelines in the command layer: argv building, errors, and the relay."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from encroot.errors import DatasetExists, InvalidProperty, ZfsError
from encroot.zfs import Command, SendSpec, SubprocessRunner
from encroot.zfs.runner import RELAY_CHUNK, widen_pipes

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


def test_a_transfer_runs_the_send_and_a_state_changing_receive() -> None:
    zfs, runner = make_zfs()
    zfs.transfer(SendSpec("src/a@s1"), "dst/a")
    assert [(c.argv[1], c.mutates) for c, _ in runner.calls] == [("send", False),
                                                                 ("receive", True)]


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


def test_a_resumed_send_whose_estimate_wrapped_below_zero_has_nothing_left() -> None:
    wrapped = 2**64 - 4096  # what 2.3.2 printed after a cut raw initial stream
    zfs, _ = make_zfs(lambda c: (0, f"resume token contents:\nsize\t{wrapped}\n", ""))
    assert zfs.send_size(SendSpec(resume_token="1-abc123-d0-789c")) == 0


def test_a_replicated_dry_run_gives_each_snapshots_row() -> None:
    out = ("full\ttank/my data@s1\t100\nincremental\ts1\ttank/my data@s2\t20\n"
           "full\ttank/my data/c@s1\t7\nincremental\ts1\ttank/my data/c@s2\t3\nsize\t130\n")
    zfs, runner = make_zfs(lambda c: (0, out, ""))
    estimate = zfs.send_estimate(SendSpec("tank/my data@s2", raw=False, replicate=True))
    assert runner.argvs[0] == ("/sbin/zfs", "send", "-n", "-P", "-R", "tank/my data@s2")
    assert estimate.total == 130
    assert estimate.streams == (("tank/my data@s1", None, 100), ("tank/my data@s2", "s1", 20),
                                ("tank/my data/c@s1", None, 7), ("tank/my data/c@s2", "s1", 3))


def test_a_dry_run_without_a_size_line_is_an_error() -> None:
    zfs, _ = make_zfs(lambda c: (0, "full\tsrc/a@s1\t1234\n", ""))
    with pytest.raises(ZfsError, match="no size line"):
        zfs.send_estimate(SendSpec("src/a@s1"))


def test_the_relay_moves_every_byte_and_counts_them() -> None:
    counted: list[int] = []
    sent, received = SubprocessRunner().pipe(
        Command(("head", "-c", "300000", "/dev/zero")), Command(("wc", "-c")),
        progress=counted.append)
    assert sent.ok and received.ok
    assert received.stdout.strip() == "300000" and sum(counted) == 300_000


def _pipe_size_probe() -> Command:
    """A receiver that reads its stdin to the end, then prints that pipe's buffer size."""
    return Command(("sh", "-c", f"cat > /dev/null; {sys.executable} -c 'import fcntl; "
                    "print(fcntl.fcntl(0, fcntl.F_GETPIPE_SZ))'"))


def test_the_relay_gives_the_receivers_pipe_a_mebibyte_of_buffer() -> None:
    _, received = SubprocessRunner().pipe(Command(("head", "-c", "1000", "/dev/zero")),
                                          _pipe_size_probe())
    assert received.stdout.strip() == str(RELAY_CHUNK)


def test_a_relayed_stream_descriptor_reaches_a_child_through_a_mebibyte_pipe(
        tmp_path: Path) -> None:
    stream = tmp_path / "stream"
    stream.write_bytes(b"x" * 1000)
    with open(stream, "rb", buffering=0) as handle:
        done = SubprocessRunner().run(_pipe_size_probe(), stdin_fd=handle.fileno())
    assert done.stdout.strip() == str(RELAY_CHUNK)


def test_widening_skips_a_descriptor_that_is_no_pipe_and_widens_the_rest(
        tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    try:
        with open(tmp_path / "file", "wb") as handle:
            widen_pipes(handle.fileno(), write_end)
        assert fcntl.fcntl(read_end, fcntl.F_GETPIPE_SZ) == RELAY_CHUNK
    finally:
        os.close(read_end)
        os.close(write_end)


def test_a_receiver_that_stops_reading_ends_the_sender() -> None:
    sent, received = SubprocessRunner().pipe(Command(("yes",)), Command(("head", "-c", "10")))
    assert received.ok and received.stdout == "y\n" * 5
    assert not sent.ok  # killed (or SIGPIPE): it never runs on alone


def test_a_stream_descriptor_is_relayed_whole_and_never_handed_to_the_child(
        tmp_path: Path) -> None:
    stream = tmp_path / "stream"
    stream.write_bytes(os.urandom(3 << 20))
    with open(stream, "rb", buffering=0) as handle:
        done = SubprocessRunner().run(
            Command(("sh", "-c", "readlink /proc/self/fd/* | grep -c stream; wc -c")),
            stdin_fd=handle.fileno())
    opened, size = done.stdout.split()
    assert (opened, size) == ("0", str(3 << 20))  # the child reads a pipe, never the file


def test_a_child_that_stops_reading_ends_the_relay_while_the_sender_stalls() -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b"0123456789abcdef")
    started = time.monotonic()
    try:
        done = SubprocessRunner().run(Command(("head", "-c", "10")), stdin_fd=read_end)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert done.ok and done.stdout == "0123456789"
    assert time.monotonic() - started < 5


RELAYING_PARENT = """
import sys
from encroot.zfs import Command, SubprocessRunner
print("relaying", flush=True)
SubprocessRunner().run(Command(("sh", "-c", "cat > /dev/null; echo ended > " + sys.argv[1])),
                       stdin_fd=0)
"""


def test_a_child_sees_its_stream_end_when_encroot_is_killed(tmp_path: Path) -> None:
    """The sender keeps its end open; only encroot's death can end the child's stream."""
    mark = tmp_path / "mark"
    read_end, write_end = os.pipe()
    parent = subprocess.Popen([sys.executable, "-c", RELAYING_PARENT, str(mark)],
                              stdin=read_end, stdout=subprocess.PIPE)
    os.close(read_end)
    try:
        assert parent.stdout is not None and parent.stdout.readline() == b"relaying\n"
        os.write(write_end, b"x" * 100_000)
        time.sleep(0.5)
        assert not mark.exists()  # the child still reads
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while not mark.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert mark.read_text() == "ended\n"
    finally:
        os.close(write_end)
