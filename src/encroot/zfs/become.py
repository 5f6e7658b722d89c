"""Finding zfs and zpool, and becoming zfs: the drop-in's whole path, kept light.

A pass-through ``encroot receive`` does nothing but find ``zfs`` and
``execve`` it, so its cost beside plain ``zfs receive`` is this process's
start-up alone.  This module is what that path imports of the ZFS layer: the
standard library's ``os`` and ``signal``, and encroot's errors.
``SubprocessRunner.replace`` and ``Zfs.exec_replacing`` go through
``become`` too, so there is one exec in encroot.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping, Sequence

from ..errors import ZfsUnavailable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

__all__ = ["SBIN_DIRS", "become", "find_program"]

# Where distributions install zfs/zpool; searched after $PATH because
# sudo and cron often run with a PATH that lacks the sbin directories.
SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")

# Python ignores these; ignored signals survive exec, so they are reset first.
_IGNORED_BY_PYTHON = tuple(getattr(signal, name) for name in ("SIGPIPE", "SIGXFSZ", "SIGXFZ")
                           if hasattr(signal, name))


def find_program(program: str, env: Mapping[str, str] | None = None) -> str:
    """The path of ``zfs`` or ``zpool``: ``$ENCROOT_ZFS``/``$ENCROOT_ZPOOL``, then
    $PATH, then the sbin directories.

    The search is ``shutil.which``'s, written out: ``shutil`` imports the
    compression modules, 40 ms of a pass-through's start-up under emulation.

    Raises:
        ZfsUnavailable: the program cannot be found or is not executable.
    """
    env = os.environ if env is None else env
    variable = f"ENCROOT_{program.upper()}"
    override = env.get(variable)
    if override:
        if not _executable(override):
            raise ZfsUnavailable(f"{variable}={override!r}: not an executable file")
        return override
    for folder in [*env.get("PATH", "").split(os.pathsep), *SBIN_DIRS]:
        path = os.path.join(folder or os.curdir, program)
        if _executable(path):
            return path
    raise ZfsUnavailable(f"{program}: not found in $PATH or {', '.join(SBIN_DIRS)} "
                         f"(is OpenZFS installed? set {variable} to its path)")


def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def become(argv: Sequence[str], extra_env: Mapping[str, str] | None = None) -> NoReturn:
    """Replace this process with ``argv`` (``execve``): same pid, stdio and locale.

    The environment is the caller's own plus ``extra_env``.  Signals Python
    ignores (SIGPIPE, SIGXFSZ) are reset to their defaults first, as
    ``subprocess`` does for its children, so zfs dies of a closed pipe as it
    would when started by a shell.

    Raises:
        ZfsUnavailable: the program cannot be executed (this process goes on).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    env = dict(os.environ)
    env.update(extra_env or {})
    saved = {number: signal.signal(number, signal.SIG_DFL) for number in _IGNORED_BY_PYTHON}
    try:
        os.execve(argv[0], list(argv), env)  # noqa: S606 (argv, no shell)
    except OSError as exc:
        for number, handler in saved.items():
            signal.signal(number, handler)
        raise ZfsUnavailable(f"{argv[0]}: cannot start it ({exc.strerror})") from exc
