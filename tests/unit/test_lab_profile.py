"""bench/lab_profile.py: accounting records decoded, and zfs processes attributed to the
test module and to whoever started them (the test or encroot)."""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path
from types import ModuleType


def _load() -> ModuleType:
    path = Path(__file__).parents[2] / "bench" / "lab_profile.py"
    spec = importlib.util.spec_from_file_location("lab_profile", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lab_profile = _load()


def record(pid: int, ppid: int, start: int, comm: str, user: int = 0, system: int = 0) -> bytes:
    """An acct_v3 record as the kernel writes it (times in comp_t, 1/100 s)."""
    raw = bytearray(64)
    raw[1] = 3
    struct.pack_into("<III", raw, 16, pid, ppid, start)
    struct.pack_into("<HH", raw, 32, user, system)
    raw[48:48 + len(comm)] = comm.encode()
    return bytes(raw)


def test_comp_t_has_a_base_8_exponent() -> None:
    assert lab_profile.comp_t(5) == 5
    assert lab_profile.comp_t((1 << 13) | 5) == 40
    assert lab_profile.comp_t((2 << 13) | 3) == 192


def test_records_and_the_table_by_command() -> None:
    data = record(10, 1, 100, "zfs", 12, 30) + record(11, 1, 101, "zfs", 8, 0) + \
        record(12, 1, 102, "python3", 100)
    found = lab_profile.records(data + b"\0" * 64)  # a record of another version is skipped
    assert [p.comm for p in found] == ["zfs", "zfs", "python3"]
    assert found[0].cpu == 0.42
    assert lab_profile.by_command(found)["zfs"] == (2, 0.2, 0.3)


def test_zfs_processes_belong_to_their_module_and_to_whoever_started_them() -> None:
    pytest_pid = 50
    data = b"".join([
        record(60, pytest_pid, 10, "zfs", 10),    # the test's own zfs get
        record(61, pytest_pid, 11, "bash"),       # a test's shell script ...
        record(62, 61, 11, "zfs", 20),            # ... running zfs
        record(63, pytest_pid, 12, "python3"),    # encroot ...
        record(64, 63, 12, "zfs", 30),            # ... and its zfs
        record(65, 1, 13, "zfs", 40),             # started by nothing we watch
    ])
    rows = lab_profile.attribute(lab_profile.records(data), {pytest_pid: "tests/zfs/test_x.py"})
    mine = rows["tests/zfs/test_x.py"]
    assert (mine["test"], mine["test centiseconds"]) == (2, 30)
    assert (mine["encroot"], mine["encroot centiseconds"]) == (1, 30)
    assert rows["(outside the tests)"]["test"] == 1
