"""Which processes use a mount point (what ``fuser -m`` shows), read from ``/proc``.

Cutover refuses a busy file system and names its users: a process whose
working directory, root, open file or mapped file lies below the mount point.
"""

from __future__ import annotations

import os

__all__ = ["holders"]


def _below(path: str, mountpoint: str) -> bool:
    base = mountpoint.rstrip("/") or "/"
    return path == base or path.startswith(base + "/")


def _uses(pid: str, mountpoint: str, proc: str) -> bool:
    links = [f"{proc}/{pid}/cwd", f"{proc}/{pid}/root"]
    try:
        links += [f"{proc}/{pid}/fd/{fd}" for fd in os.listdir(f"{proc}/{pid}/fd")]
    except OSError:
        pass
    for link in links:
        try:
            if _below(os.readlink(link), mountpoint):
                return True
        except OSError:
            continue
    try:
        with open(f"{proc}/{pid}/maps", encoding="utf-8", errors="replace") as maps:
            return any(_below(line.split(None, 5)[5].strip(), mountpoint)
                       for line in maps if len(line.split(None, 5)) == 6)
    except OSError:
        return False


def holders(mountpoint: str, *, proc: str = "/proc") -> list[str]:
    """``pid N (command)`` for each process using ``mountpoint``, this one excepted."""
    found = []
    me = str(os.getpid())
    try:
        pids = sorted((p for p in os.listdir(proc) if p.isdigit()), key=int)
    except OSError:
        return []
    for pid in pids:
        if pid == me or not _uses(pid, mountpoint, proc):
            continue
        try:
            with open(f"{proc}/{pid}/comm", encoding="utf-8", errors="replace") as comm:
                name = comm.read().strip()
        except OSError:
            name = "?"
        found.append(f"pid {pid} ({name})")
    return found
