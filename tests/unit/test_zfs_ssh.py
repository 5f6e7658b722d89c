"""ssh argv building, remote quoting, and ssh's failures as typed errors (pure)."""

from __future__ import annotations

import shlex

import pytest

from encroot.errors import (
    RemoteAuthFailed,
    RemoteConnectionLost,
    RemoteError,
    RemoteHostKey,
    RemoteUnreachable,
    RemoteZfsMissing,
)
from encroot.zfs import Command
from encroot.zfs.ssh import REMOTE_PREFIX, SshTarget, classify_ssh_failure, remote_line, ssh_argv

TARGET = SshTarget("backup@newhost", "backup@newhost", ("-F", "/tmp/cfg"), "/tmp/d/%C")


def test_argv_uses_batch_mode_master_and_user_options_before_the_host() -> None:
    argv = ssh_argv(TARGET, ("zfs", "list"))
    assert argv[:9] == ("ssh", "-o", "BatchMode=yes", "-o", "ControlMaster=no",
                        "-o", "ControlPath=/tmp/d/%C", "-F", "/tmp/cfg")
    assert argv[9:11] == ("--", "backup@newhost")
    assert argv[11] == f"{REMOTE_PREFIX} zfs list"
    assert not any("StrictHostKeyChecking" in a for a in argv)


def test_remote_line_keeps_names_with_spaces_and_quotes_one_argument() -> None:
    line = remote_line(("zfs", "get", "all", "tank/my data", "tank/it's"))
    words = shlex.split(line)
    assert words[:2] == ["LC_ALL=C", "PATH=$PATH:/usr/sbin:/sbin:/usr/local/sbin"]
    assert words[2:] == ["zfs", "get", "all", "tank/my data", "tank/it's"]


def test_shell_line_prints_the_real_ssh_line_and_hides_secrets() -> None:
    command = Command(("zfs", "load-key", "-L", "prompt", "new tank"), mutates=True,
                      secret_stdin=True, remote=TARGET)
    line = command.shell_line()
    assert line.startswith("ssh -o BatchMode=yes ") and line.endswith(" < <secret>")
    words = shlex.split(line.removesuffix(" < <secret>"))
    assert shlex.split(words[-1])[-1] == "new tank"
    assert command.process_argv[0] == "ssh" and command.argv[0] == "zfs"


def test_a_key_descriptor_never_crosses_ssh() -> None:
    with pytest.raises(ValueError, match="over ssh"):
        Command(("zfs", "receive", "x"), key_fd=5, remote=TARGET)


@pytest.mark.parametrize(("code", "stderr", "kind"), [
    (255, "ssh: connect to host 127.0.0.1 port 2299: Connection refused\r\n",
     RemoteUnreachable),
    (255, "ssh: Could not resolve hostname nohost: Name or service not known\n",
     RemoteUnreachable),
    (255, "root@127.0.0.1: Permission denied (publickey).\n", RemoteAuthFailed),
    (255, "No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict "
          "checking.\nHost key verification failed.\n", RemoteHostKey),
    (255, "@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\nHost key verification "
          "failed.\n", RemoteHostKey),
    (127, "sh: 1: zfs: not found\n", RemoteZfsMissing),
    (127, "bash: line 1: zpool: command not found\n", RemoteZfsMissing),
    (255, "Connection to 127.0.0.1 closed by remote host.\n", RemoteConnectionLost),
    (255, "", RemoteConnectionLost),
])
def test_classifies_ssh_failures(code: int, stderr: str, kind: type[RemoteError]) -> None:
    error = classify_ssh_failure("backup@newhost", code, stderr)
    assert type(error) is kind
    assert error is not None and str(error).startswith("backup@newhost: ")
    assert "\n" not in str(error) and error.host == "backup@newhost"


def test_host_key_message_says_changed_or_unknown() -> None:
    changed = classify_ssh_failure("h", 255, "REMOTE HOST IDENTIFICATION HAS CHANGED\n")
    unknown = classify_ssh_failure("h", 255, "Host key verification failed.\n")
    assert "has changed" in str(changed) and "is not known" in str(unknown)


@pytest.mark.parametrize(("code", "stderr"), [
    (1, "cannot open 'tank/x': dataset does not exist\n"),
    (2, "usage: zfs ...\n"),
    (127, "sh: 1: frobnicate: not found\n"),
])
def test_remote_zfs_failures_are_left_to_translate(code: int, stderr: str) -> None:
    assert classify_ssh_failure("h", code, stderr) is None
