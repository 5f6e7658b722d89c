"""Where a lab guest's CPU goes: BSD process accounting over a test run, then a report.

Run inside a guest by ``bench/lab-profile.sh``; three verbs:

- ``start FILE``: turn process accounting on (``acct(2)``), every ending process
  is appended to FILE as an ``acct_v3`` record (command name, pid, parent pid,
  user and system CPU time);
- ``watch FILE``: until killed, note once a second which test module each
  running pytest process runs (``pid<TAB>module`` lines), so the report can
  name the module a ``zfs`` process served;
- ``report FILE WATCHED``: turn accounting off and print the CPU seconds by
  command, by kernel thread, and for ``zfs``/``zpool``: who started them (the
  test itself, or encroot) in each test module.

Why accounting rather than timing: under TCG the guest keeps both host CPUs busy,
so a test's wall time depends on what the other worker runs; CPU seconds per
process do not.  Standard library only: the guest has nothing else.
"""

from __future__ import annotations

import collections
import ctypes
import os
import struct
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

RECORD = 64  # sizeof(struct acct_v3), linux/acct.h
HZ = 100  # AHZ: the unit of acct_v3's times


def comp_t(value: int) -> int:
    """Decode a ``comp_t``: a 13-bit mantissa and a 3-bit base-8 exponent."""
    return (value & 0x1FFF) << (3 * (value >> 13))


class Proc(NamedTuple):
    """One ended process, as its accounting record tells it."""

    pid: int
    ppid: int
    start: int  # seconds since the epoch
    user: float  # CPU seconds
    system: float
    comm: str

    @property
    def cpu(self) -> float:
        return self.user + self.system


def records(data: bytes) -> list[Proc]:
    """The ``acct_v3`` records of an accounting file."""
    found = []
    for offset in range(0, len(data) - RECORD + 1, RECORD):
        raw = data[offset:offset + RECORD]
        if raw[1] != 3:  # ac_version
            continue
        pid, ppid, start = struct.unpack_from("<III", raw, 16)
        user, system = struct.unpack_from("<HH", raw, 32)
        found.append(Proc(pid, ppid, start, comp_t(user) / HZ, comp_t(system) / HZ,
                          raw[48:64].split(b"\0")[0].decode(errors="replace")))
    return found


def by_command(found: Iterable[Proc]) -> dict[str, tuple[int, float, float]]:
    """Command name -> (processes, user seconds, system seconds)."""
    table: dict[str, tuple[int, float, float]] = {}
    for proc in found:
        count, user, system = table.get(proc.comm, (0, 0.0, 0.0))
        table[proc.comm] = (count + 1, user + proc.user, system + proc.system)
    return table


def attribute(found: list[Proc], modules: dict[int, str]) -> dict[str, collections.Counter[str]]:
    """Module -> counts and CPU seconds of its ``zfs``/``zpool`` processes, by who
    started them.

    A process belongs to the pytest process (``modules``: pid -> module) found by
    walking up its parents (each the newest process with that pid started before
    it); "encroot" if a ``python3`` other than pytest is on the way, else "test"
    (the test, or a shell it started).
    """
    latest: dict[int, Proc] = {}
    parent_of: dict[Proc, Proc | None] = {}
    for proc in sorted(found, key=lambda p: p.start):
        parent_of[proc] = latest.get(proc.ppid)
        latest[proc.pid] = proc
    result: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for proc in found:
        if proc.comm not in ("zfs", "zpool"):
            continue
        via, pid, up = "test", proc.ppid, parent_of.get(proc)
        while pid not in modules and up is not None:
            if up.comm == "python3":
                via = "encroot"
            pid, up = up.ppid, parent_of.get(up)
        module = modules.get(pid, "(outside the tests)")
        result[module][via] += 1
        result[module][via + " centiseconds"] += round(proc.cpu * HZ)
    return dict(result)


def start(path: str) -> None:
    Path(path).write_bytes(b"")
    if ctypes.CDLL(None, use_errno=True).acct(path.encode()) != 0:
        sys.exit(f"lab_profile: acct({path}) failed: errno {ctypes.get_errno()}")


def watch(path: str) -> None:
    """Note each pytest process's module (the last ``tests/...py`` word of its argv)."""
    seen: set[int] = set()
    with open(path, "a", buffering=1) as out:
        while True:
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit() or int(entry.name) in seen:
                    continue
                try:
                    argv = (entry / "cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                words = [w.decode(errors="replace") for w in argv]
                if "pytest" in words and "--collect-only" not in words:
                    module = next((w.split("::")[0] for w in reversed(words)
                                   if w.startswith("tests/")), "?")
                    out.write(f"{entry.name}\t{module}\n")
                    seen.add(int(entry.name))
            time.sleep(1)


def report(path: str, watched: str) -> None:
    ctypes.CDLL(None).acct(None)
    found = records(Path(path).read_bytes())
    commands = by_command(found)
    total = sum(proc.cpu for proc in found)
    print(f"{len(found)} processes ended, {total:.0f} CPU seconds")
    print(f"{'command':<16} {'processes':>9} {'user s':>8} {'system s':>8} {'s each':>7}")
    for name, (count, user, system) in sorted(commands.items(),
                                              key=lambda kv: -(kv[1][1] + kv[1][2]))[:25]:
        print(f"{name:<16} {count:>9.0f} {user:>8.1f} {system:>8.1f} "
              f"{(user + system) / count:>7.2f}")
    modules = {}
    for line in Path(watched).read_text().splitlines():
        pid, module = line.split("\t")
        modules[int(pid)] = module
    print("\nzfs/zpool processes per test module, by who started them (CPU seconds):")
    rows = attribute(found, modules)
    for module, counts in sorted(rows.items(), key=lambda kv: -sum(
            kv[1][f"{via} centiseconds"] for via in ("test", "encroot"))):
        print(f"{module:<44} " + "  ".join(
            f"{via} {counts[via]:>5} ({counts[f'{via} centiseconds'] / HZ:>6.0f} s)"
            for via in ("test", "encroot")))
    stat = Path("/proc/stat").read_text().splitlines()[0].split()[1:8]
    tick = os.sysconf("SC_CLK_TCK")
    print("\n/proc/stat since boot: " + ", ".join(
        f"{name} {int(value) / tick:.0f} s" for name, value in
        zip(("user", "nice", "system", "idle", "iowait", "irq", "softirq"), stat,
            strict=True)))


if __name__ == "__main__":
    verb, *args = sys.argv[1:]
    if verb == "start":
        start(*args)
    elif verb == "watch":
        watch(*args)
    elif verb == "report":
        report(*args)
    else:
        sys.exit(f"lab_profile: unknown verb {verb!r} (start, watch, report)")
