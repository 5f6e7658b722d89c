"""Who holds a piece of encroot's state: the owner recorded in every marker.

An ``Owner`` names one process well enough to tell, later and from another
process, whether it is still running: the host (``/etc/machine-id``, else
the host name), the boot (``/proc/sys/kernel/random/boot_id``), the pid and
the process's start time (field 22 of ``/proc/PID/stat``, clock ticks since
boot), so that a pid reused after the owner died does not count as it.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ..errors import InputError
from ..records import record

__all__ = ["Owner", "boot_id", "host_id", "process_start", "processes_with_argument"]

MACHINE_ID = "/etc/machine-id"
BOOT_ID = "/proc/sys/kernel/random/boot_id"


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def host_id() -> str:
    """This machine: its ``/etc/machine-id``, or its host name when there is none."""
    return _read(MACHINE_ID) or os.uname().nodename  # gethostname(), without importing socket


def boot_id() -> str:
    """This boot of the kernel; "" when ``/proc`` cannot tell."""
    return _read(BOOT_ID)


def process_start(pid: int) -> str:
    """Field 22 of ``/proc/PID/stat`` (start time in clock ticks after boot); "" if no such
    process.  The command name (field 2) may hold spaces and parentheses, so the fields
    are counted after its last ``)``."""
    text = _read(f"/proc/{pid}/stat")
    try:
        return text.rsplit(")", 1)[1].split()[19]
    except IndexError:
        return ""


@record(frozen=True)
class Owner:
    """The process that wrote a marker; while it is alive, the state is its own.

    Attributes:
        host: ``/etc/machine-id`` (or the host name) of the machine it ran on.
        boot_id: the kernel boot it ran in.
        pid: its process id.
        start: its start time, field 22 of ``/proc/PID/stat``.
    """

    host: str
    boot_id: str
    pid: int
    start: str

    @classmethod
    def current(cls) -> Owner:
        """This process."""
        pid = os.getpid()
        return cls(host=host_id(), boot_id=boot_id(), pid=pid, start=process_start(pid))

    def alive(self) -> bool:
        """Same host and boot, and the pid runs with the same start time.

        Another host, another boot, a pid that is gone or was reused, or a
        start time that could not be read all count as dead.
        """
        if not self.start or self.host != host_id() or self.boot_id != boot_id():
            return False
        return process_start(self.pid) == self.start

    def is_current(self) -> bool:
        """This very process (its own markers never block it)."""
        return self == Owner.current()

    def holds(self) -> bool:
        """Alive and another process than this one: recovery must leave its state alone."""
        return self.alive() and not self.is_current()

    def started_at(self) -> str:
        """The start time as UTC text when it is of this boot, else the raw tick count."""
        if self.boot_id != boot_id() or not self.start.isdigit():
            return f"at tick {self.start or '?'} of boot {self.boot_id or '?'}"
        btime = next((line.split()[1] for line in _read("/proc/stat").splitlines()
                      if line.startswith("btime ")), "")
        if not btime.isdigit():
            return f"at tick {self.start}"
        seconds = int(btime) + int(self.start) / os.sysconf("SC_CLK_TCK")
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))

    def describe(self) -> str:
        """``encroot pid 1234 on this host (started ...)``."""
        where = "this host" if self.host == host_id() else f"host {self.host}"
        return f"encroot pid {self.pid} on {where} (started {self.started_at()})"

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "boot_id": self.boot_id, "pid": self.pid,
                "start": self.start}

    @classmethod
    def from_json(cls, data: object) -> Owner:
        """Raises InputError (a ValueError) when ``data`` is not an owner as encroot writes it."""
        if not isinstance(data, dict) or set(data) != {"host", "boot_id", "pid", "start"}:
            raise InputError("owner: expected host, boot_id, pid and start")
        host, boot, pid, start = data["host"], data["boot_id"], data["pid"], data["start"]
        if not (isinstance(host, str) and isinstance(boot, str) and isinstance(start, str)):
            raise InputError("owner: host, boot_id and start must be strings")
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            raise InputError("owner: pid must be a positive integer")
        return cls(host=host, boot_id=boot, pid=pid, start=start)


def processes_with_argument(prefix: str) -> list[tuple[int, str]]:
    """Processes of this host with an argument starting with ``prefix``: (pid, argument).

    Read from ``/proc/PID/cmdline``; processes that end while being read, or
    whose command line cannot be read, are left out.  This process is too.
    """
    found = []
    wanted = prefix.encode()
    me = os.getpid()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                arguments = handle.read().split(b"\0")
        except OSError:
            continue
        for argument in arguments:
            if argument.startswith(wanted):
                found.append((int(entry), argument.decode(errors="replace")))
    return found
