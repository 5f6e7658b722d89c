"""The ssh form of the command layer: argv building and ssh's failures, pure.

A remote command is the same ``Command`` (its ``argv`` is what runs on the
remote host) with ``remote`` set to an ``SshTarget``; the runner starts
``ssh_argv(target, argv)`` instead.  The choices, each for a reason:

- the system OpenSSH client, so the user's ``~/.ssh/config``, agent, keys
  and known hosts apply as for any ssh command they type;
- ``-o BatchMode=yes``: encroot never waits for a password or host-key
  prompt nobody answers; a refusal is an error naming the host;
- host-key checking is left as configured (never ``StrictHostKeyChecking=no``);
- ``ControlPath`` names the one multiplexed master ``SshMasters`` opened for
  the host, and ``ControlMaster=no``: a command never becomes a master itself;
- the user's ``--ssh-option`` arguments come before the destination, in order;
- ``--`` ends ssh's options, so a host name can never be read as one;
- the remote command is one string for the remote user's POSIX shell:
  ``shlex.join(argv)`` (names with spaces or quotes stay one argument),
  prefixed by ``LC_ALL=C`` (zfs's English messages, which the error
  translator matches) and a ``PATH`` that includes the sbin folders (a
  non-root login's PATH often lacks them).

Keys: a command with a secret gets the key on its stdin; ssh carries stdin
over the encrypted channel to the remote ``zfs``, so the key is never in an
argv, environment or file on either host.
"""

from __future__ import annotations

import re
import shlex

from ..errors import (
    RemoteAuthFailed,
    RemoteConnectionLost,
    RemoteError,
    RemoteHostKey,
    RemoteUnreachable,
    RemoteZfsMissing,
)
from ..records import record

__all__ = ["REMOTE_PATH", "REMOTE_PREFIX", "SSH_EXIT", "SshTarget", "classify_ssh_failure",
           "handover_argv", "remote_line", "ssh_argv"]

SSH = "ssh"
SSH_EXIT = 255  # ssh's own failures; a remote command's status is passed through otherwise
SHELL_NOT_FOUND = 127
REMOTE_PATH = 'PATH="$PATH:/usr/sbin:/sbin:/usr/local/sbin"'
REMOTE_PREFIX = f"LC_ALL=C {REMOTE_PATH}"


@record(frozen=True)
class SshTarget:
    """A remote host as ssh is to reach it.

    Attributes:
        destination: ``USER@HOST`` or ``HOST`` (an ssh_config alias works).
        label: the host as the user wrote it, for messages.
        options: the user's own ssh arguments (``--ssh-option``), in order.
        control_path: the multiplexed master's socket, or None for none.
    """

    destination: str
    label: str = ""
    options: tuple[str, ...] = ()
    control_path: str | None = None

    @property
    def name(self) -> str:
        return self.label or self.destination

    def base_argv(self) -> list[str]:
        """``ssh`` and its options up to and including the destination."""
        argv = [SSH, "-o", "BatchMode=yes"]
        if self.control_path is not None:
            argv += ["-o", "ControlMaster=no", "-o", f"ControlPath={self.control_path}"]
        return [*argv, *self.options, "--", self.destination]


def remote_line(argv: tuple[str, ...] | list[str]) -> str:
    """The remote shell's command line for ``argv``: each argument quoted once."""
    return f"{REMOTE_PREFIX} {shlex.join(argv)}"


def ssh_argv(target: SshTarget, argv: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The local argv that runs ``argv`` on ``target``."""
    return (*target.base_argv(), remote_line(argv))


def handover_argv(target: SshTarget, argv: tuple[str, ...] | list[str], *,
                  ssh: str = SSH, terminal: bool = False) -> tuple[str, ...]:
    """The local argv a drop-in becomes to run ``argv`` on ``target``: ``ssh`` (``ssh``
    is its path, for ``execve``) without a control master, and without ``LC_ALL=C``:
    zfs speaks to the user there, as through ``ssh HOST zfs ...``.

    ``terminal``: ask ssh for a terminal there (``-t``), so that a zfs that
    prompts for a key finds one, as it does here: it turns echo off and asks
    twice.  Without one it would read the key as a plain line, echoed by the
    local terminal.  Only for a user at a terminal: ``-t`` merges the remote
    stderr into stdout and would alter piped bytes.
    """
    options = target.base_argv()[1:]
    if terminal:
        options = ["-t", *options]
    return (ssh, *options, f"{REMOTE_PATH} {shlex.join(argv)}")


# ssh's messages (OpenSSH 8.4 to 9.x, ssh.c, sshconnect.c, sshconnect2.c), last line first.
_UNREACHABLE = re.compile(
    r"ssh: connect to host .* port \d+: |ssh: Could not resolve hostname |"
    r"Connection timed out during banner exchange|Connection refused|No route to host|"
    r"Network is unreachable|kex_exchange_identification: ")
_HOST_KEY = re.compile(r"Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|"
                       r"No [A-Z0-9-]+ host key is known for|Host key for .* has changed")
_AUTH = re.compile(r"Permission denied \(|Too many authentication failures|"
                   r"no more authentication methods")
_LOST = re.compile(r"Connection to .* closed|Broken pipe|Connection reset|"
                   r"client_loop: send disconnect|mux_client_|Control socket connect|"
                   r"Connection closed by|packet_write_wait|Timeout, server .* not responding")
_NOT_FOUND = re.compile(r"(zfs|zpool)(: not found|: command not found|: No such file)")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def classify_ssh_failure(host: str, returncode: int, stderr: str) -> RemoteError | None:
    """The typed error a failed ssh invocation stands for, or None when the remote
    command itself failed (its own exit status and message, for ``translate``).

    Exit status 255 is ssh's own (a remote zfs exits 1 or 2); 127 with a
    shell's "not found" for zfs/zpool is a host without OpenZFS.  An unknown
    255 message is a lost connection, quoting ssh's last line.
    """
    detail = _last_line(stderr)
    if returncode == SHELL_NOT_FOUND and _NOT_FOUND.search(stderr):
        return RemoteZfsMissing(f"{host}: zfs is not installed there, or not on the remote "
                                f"PATH ({detail})", host=host, detail=detail)
    if returncode != SSH_EXIT:
        return None
    if _HOST_KEY.search(stderr):
        changed = "CHANGED" in stderr or "has changed" in stderr
        what = "has changed since it was recorded" if changed else "is not known"
        return RemoteHostKey(f"{host}: its ssh host key {what}; encroot never skips the check: "
                             f"verify the key and add it to known_hosts ({detail})",
                             host=host, detail=detail)
    if _AUTH.search(stderr):
        return RemoteAuthFailed(f"{host}: ssh authentication failed (BatchMode: no password "
                                f"prompt; use a key or an agent) ({detail})",
                                host=host, detail=detail)
    if _UNREACHABLE.search(stderr):
        return RemoteUnreachable(f"{host}: unreachable over ssh ({detail})",
                                 host=host, detail=detail)
    if _LOST.search(stderr) or not detail:
        return RemoteConnectionLost(f"{host}: the ssh connection was lost "
                                    f"({detail or 'ssh exited 255 without a message'})",
                                    host=host, detail=detail)
    return RemoteConnectionLost(f"{host}: ssh failed ({detail})", host=host, detail=detail)
