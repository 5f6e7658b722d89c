"""``zfs send -v -P`` progress parsing for a transfer with a side over ssh."""

from __future__ import annotations

from encroot.zfs.direct import SendProgress, is_progress_line


def test_increments_across_the_datasets_of_a_replication_stream() -> None:
    seen: list[int] = []
    progress = SendProgress(seen.append)
    for line in ["full\ttank@s\t1000", "full\ttank/a@s\t2000", "size\t3000",
                 "12:00:01\t400\ttank@s", "12:00:02\t1000\ttank@s",
                 "12:00:03\t500\ttank/a@s", "12:00:04\t500\ttank/a@s",
                 "12:00:05\t2000\ttank/a@s"]:
        progress.feed(line + "\n")
    assert seen == [400, 600, 500, 1500]
    assert progress.total == 3000 and progress.kept == []


def test_other_lines_are_kept_for_the_error_message() -> None:
    progress = SendProgress()
    progress.feed("warning: cannot send 'tank/x@s': dataset does not exist\n")
    progress.feed("12:00:01\t10\ttank/my data@s\n")
    assert progress.kept == ["warning: cannot send 'tank/x@s': dataset does not exist"]
    assert progress.total == 10
    assert is_progress_line("12:00:01\t10\ttank/my data@s")
    assert not is_progress_line("cannot open 'tank': dataset does not exist")


def test_direct_pipe_joins_the_processes_and_reports_progress() -> None:
    from encroot.zfs import Command
    from encroot.zfs.direct import direct_pipe

    sender = Command(("sh", "-c", r"printf '12:00:01\t5\tx@s\n' >&2; printf hello; "
                                  r"printf 'oops\n' >&2"))
    receiver = Command(("sh", "-c", "cat; echo done >&2"), mutates=True)
    seen: list[int] = []
    sent, received = direct_pipe(sender, receiver, env={"PATH": "/usr/bin:/bin"},
                                 progress=seen.append)
    assert (sent.returncode, received.returncode) == (0, 0)
    assert received.stdout == "hello" and received.stderr == "done\n"
    assert seen == [5] and sent.stderr == "oops"
