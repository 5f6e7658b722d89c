"""One multiplexed ssh master connection per host, opened on first use, closed at the end.

A migration runs dozens of short ``zfs`` commands on the remote host; each
over its own ssh connection would pay a key exchange and an authentication
(and the number of connections would grow with the datasets).  So
``SshMasters`` opens one master per host (``ssh -M -N -f``, OpenSSH's
``ControlMaster``) the first time that host is used, and every command rides
it (``ControlPath``); ``close`` ends them with ``ssh -O exit``.

The sockets live in a private folder (``mkdtemp``: mode 0700, owned by this
user), named by ssh's ``%C`` hash, so no other user can use the connection.
``ControlPersist`` is a timeout, not ``yes``: a master whose encroot was
killed (no ``close``) ends by itself once idle.  Opening the master is where
ssh's refusals show (unreachable, authentication, host key), before any
command ran: they become the ``RemoteError`` that names the host.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable

from ..errors import RemoteConnectionLost, RemoteUnreachable
from ..records import field, record
from .ssh import SSH, SshTarget, classify_ssh_failure

__all__ = ["CONTROL_PERSIST_SECONDS", "Spawn", "SshMasters"]

# Idle seconds after which an orphaned master (its encroot killed) exits by itself.
CONTROL_PERSIST_SECONDS = 60
# A master that takes longer than this to authenticate counts as unreachable.
CONNECT_TIMEOUT_SECONDS = 120

# Runs an ssh argv to its end: (exit status, stderr).  Tests pass a fake.
Spawn = Callable[[list[str]], tuple[int, str]]


def _spawn(argv: list[str]) -> tuple[int, str]:
    """Run ssh with stderr in an unnamed temporary file, not a pipe: ``-f`` leaves a
    daemon behind that keeps the descriptor, and a pipe would never reach its end."""
    import tempfile  # here: only remote runs pay for the import

    with tempfile.TemporaryFile() as errors:
        try:
            process = subprocess.run(argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=errors, check=False,
                                     timeout=CONNECT_TIMEOUT_SECONDS)
            code = process.returncode
        except subprocess.TimeoutExpired:
            code = -1
        except OSError as exc:
            return 127, f"{argv[0]}: cannot start it ({exc.strerror})"
        errors.seek(0)
        return code, errors.read().decode(errors="replace")


@record
class SshMasters:
    """The master connections of one encroot run; use as a context manager.

    Attributes:
        options: the user's ssh arguments (``--ssh-option``), given to every ssh.
        spawn: runs ssh's master commands (``-M``, ``-O exit``); tests pass a fake.
        opened: destination -> its target with the control path, once connected.
    """

    options: tuple[str, ...] = ()
    spawn: Spawn = _spawn
    opened: dict[str, SshTarget] = field(default_factory=dict)
    _directory: str | None = None

    def __enter__(self) -> SshMasters:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def target(self, destination: str, label: str = "") -> SshTarget:
        """The target for ``destination`` as commands will use it (not connected yet)."""
        if self._directory is None:
            import tempfile  # here: only remote runs pay for the import

            self._directory = tempfile.mkdtemp(prefix="encroot-ssh-")  # mode 0700
        return SshTarget(destination, label, self.options,
                         os.path.join(self._directory, "%C"))

    def master_argv(self, target: SshTarget) -> list[str]:
        """``ssh -M -N -f``: authenticate, then leave the master in the background."""
        assert target.control_path is not None
        return [SSH, "-o", "BatchMode=yes", "-o", "ControlMaster=yes",
                "-o", f"ControlPath={target.control_path}",
                "-o", f"ControlPersist={CONTROL_PERSIST_SECONDS}",
                "-N", "-f", *target.options, "--", target.destination]

    def exit_argv(self, target: SshTarget) -> list[str]:
        assert target.control_path is not None
        return [SSH, "-o", f"ControlPath={target.control_path}", *target.options,
                "-O", "exit", "--", target.destination]

    def ensure(self, target: SshTarget) -> None:
        """Open ``target``'s master unless it is open.

        Raises:
            RemoteUnreachable, RemoteAuthFailed, RemoteHostKey: ssh's refusal, naming
                the host; nothing ran on it.
        """
        if target.control_path is None or target.destination in self.opened:
            return
        code, stderr = self.spawn(self.master_argv(target))
        if code == 0:
            self.opened[target.destination] = target
            return
        if code == -1:
            raise RemoteUnreachable(f"{target.name}: no ssh connection after "
                                    f"{CONNECT_TIMEOUT_SECONDS} s", host=target.name)
        error = classify_ssh_failure(target.name, 255, stderr)
        raise error if error is not None else RemoteConnectionLost(
            f"{target.name}: ssh failed ({stderr.strip()[-200:]})", host=target.name)

    def close(self) -> None:
        """End every master (``ssh -O exit``) and remove the socket folder; never raises."""
        for target in list(self.opened.values()):
            try:
                self.spawn(self.exit_argv(target))
            except Exception:  # noqa: S110 (closing must go on for the other hosts)
                pass
        self.opened.clear()
        if self._directory is not None:
            import shutil  # here: only remote runs pay for the import

            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None
