"""The remote part of ``Zfs`` (a mixin, so ``Zfs`` stays one door): connecting to a host
over ssh and turning ssh's failures into ``RemoteError``s before ``translate`` sees them."""

from __future__ import annotations

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
