"""The remote part of ``Zfs`` (a mixin, so ``Zfs`` stays one door): connecting to a host
over ssh and turning ssh's failures into ``RemoteError``s before ``translate`` sees them."""

from __future__ import annotations

import re
import shlex
from typing import TYPE_CHECKING

from ..errors import InputError, RemoteError, RemoteZfsTooOld, ZfsError
from .runner import Command, Result
from .ssh import classify_ssh_failure

if TYPE_CHECKING:
    from ..keys import Key
    from .masters import SshMasters
    from .parse import ZfsVersion
    from .ssh import SshTarget

__all__ = ["OLDEST_SUPPORTED", "RemoteMethods"]

# The oldest OpenZFS encroot supports, on this host or a remote one.
OLDEST_SUPPORTED = (2, 1)

_CMDLINE = re.compile(r"/proc/(\d+)/cmdline")


def parse_cmdline_matches(output: str, prefix: str) -> list[tuple[int, str]]:
    """``grep -a -H`` lines of ``/proc/PID/cmdline`` files -> (pid, argument) for each
    argument that starts with ``prefix`` (the arguments are NUL-separated)."""
    found = []
    for line in output.split("\n"):
        path, sep, arguments = line.partition(":")
        match = _CMDLINE.fullmatch(path)
        if not sep or match is None:
            continue
        found += [(int(match.group(1)), argument) for argument in arguments.split("\0")
                  if argument.startswith(prefix)]
    return found


class RemoteMethods:
    """Connecting to ``remote`` once, and ssh's failures as typed errors."""

    if TYPE_CHECKING:
        remote: SshTarget | None
        masters: SshMasters | None
        _connected: bool

        def version(self) -> ZfsVersion: ...

        def execute(self, command: Command, *, key: Key | None = None, check: bool = True,
                    stdin_fd: int | None = None, data: bytes | None = None,
                    timeout: float | None = None) -> Result: ...

    def list_directory(self, path: str) -> list[str]:
        """The entries of a folder on the host this layer runs on (``ls -A``, POSIX), for
        what a remote host holds beside ZFS (a root's own files).

        Raises:
            ZfsError: ``ls`` failed (no such folder, permission).
        """
        if not path.startswith("/") or "\0" in path:
            raise InputError(f"{path!r}: not an absolute path")
        result = self.execute(Command(("ls", "-A", "--", path), remote=self.remote))
        return [line for line in result.stdout.splitlines() if line]

    def processes_with_argument(self, prefix: str) -> list[tuple[int, str]]:
        """The remote host's processes with an argument starting with ``prefix``: (pid,
        argument), read from its ``/proc/PID/cmdline`` with one ``grep -a`` (Linux; a host
        without ``/proc`` lists none).  The remote twin of
        ``encroot.owned.processes_with_argument``, for recovery's wait for a ``zfs
        receive`` whose encroot died.

        Raises:
            InputError: this layer runs on this host (read ``/proc`` directly).
            RemoteError: ssh failed.
        """
        if self.remote is None:
            raise InputError("processes_with_argument runs over ssh; read /proc here")
        script = (f"grep -a -H -s -F -e {shlex.quote(prefix)} /proc/[0-9]*/cmdline "
                  "2>/dev/null || :")
        result = self.execute(Command(("sh", "-c", script), remote=self.remote))
        return parse_cmdline_matches(result.stdout, prefix)

    @property
    def host(self) -> str | None:
        """The remote host as the user named it; None for this host."""
        return None if self.remote is None else self.remote.name

    def connect(self) -> None:
        """For a remote host: open its ssh master, then check its OpenZFS (``zfs version``).

        Runs once, before the first remote command; a local ``Zfs`` does nothing.

        Raises:
            RemoteUnreachable, RemoteAuthFailed, RemoteHostKey: ssh refused.
            RemoteZfsMissing: no zfs on the remote PATH.
            RemoteZfsTooOld: an OpenZFS older than 2.1 there.
        """
        if self.remote is None or self._connected:
            return
        if self.masters is not None:
            self.masters.ensure(self.remote)
        self._connected = True
        host = self.remote.name
        try:
            version = self.version()
        except RemoteError:
            self._connected = False
            raise
        except ZfsError as exc:
            self._connected = False
            raise RemoteZfsTooOld(f"{host}: `zfs version` failed ({exc}); encroot needs "
                                  "OpenZFS 2.1 or newer there", host=host,
                                  detail=str(exc)) from exc
        if version.userland < OLDEST_SUPPORTED:
            self._connected = False
            raise RemoteZfsTooOld(f"{host}: OpenZFS {version.userland_text} is too old; "
                                  "encroot needs 2.1 or newer there", host=host,
                                  detail=version.userland_text)

    def _check_remote(self, result: Result) -> None:
        """Raise the ``RemoteError`` a failed remote command stands for, if ssh failed."""
        if result.command.remote is None or result.ok:
            return
        error = classify_ssh_failure(result.command.remote.name, result.returncode,
                                     result.stderr)
        if error is not None:
            raise error
