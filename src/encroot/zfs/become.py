"""Finding zfs and zpool, and becoming zfs: the drop-in's whole path, kept light.

A pass-through ``encroot receive`` does nothing but find ``zfs`` and
``execve`` it, so its cost beside plain ``zfs receive`` is this process's
start-up alone.  This module is what that path imports of the ZFS layer: the
standard library's ``os``, ``shutil`` and ``signal``, and encroot's errors.
``SubprocessRunner.replace`` and ``Zfs.exec_replacing`` go through
``become`` too, so there is one exec in encroot.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import ZfsUnavailable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

__all__ = ["SBIN_DIRS", "Binaries", "become", "find_binaries"]

# Where distributions install zfs/zpool; searched after $PATH because
# sudo and cron often run with a PATH that lacks the sbin directories.
SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")

# Python ignores these; ignored signals survive exec, so they are reset first.
_IGNORED_BY_PYTHON = tuple(getattr(signal, name) for name in ("SIGPIPE", "SIGXFSZ", "SIGXFZ")
                           if hasattr(signal, name))


@dataclass(frozen=True)
class Binaries:
    """Absolute paths of the zfs and zpool programs."""

    zfs: str
    zpool: str


def find_binaries(env: Mapping[str, str] | None = None) -> Binaries:
    """Locate zfs and zpool: ``$ENCROOT_ZFS``/``$ENCROOT_ZPOOL``, then $PATH, then sbin dirs.

    Raises:
        ZfsUnavailable: a program cannot be found or is not executable.
    """
    env = os.environ if env is None else env
    search = os.pathsep.join([env.get("PATH", ""), *SBIN_DIRS])
    found: dict[str, str] = {}
    for program in ("zfs", "zpool"):
        override = env.get(f"ENCROOT_{program.upper()}")
        if override:
            if not (os.path.isfile(override) and os.access(override, os.X_OK)):
                raise ZfsUnavailable(f"ENCROOT_{program.upper()}={override!r}: "
                                     "not an executable file")
            found[program] = override
            continue
        path = shutil.which(program, path=search)
        if path is None:
            raise ZfsUnavailable(f"{program}: not found in $PATH or {', '.join(SBIN_DIRS)} "
                                 "(is OpenZFS installed? set ENCROOT_" + program.upper()
                                 + " to its path)")
        found[program] = path
    return Binaries(zfs=found["zfs"], zpool=found["zpool"])


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
