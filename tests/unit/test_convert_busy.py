"""Who uses a mount point, read from a /proc-shaped folder (cwd, root, open files, maps)."""

from __future__ import annotations

import os
from pathlib import Path

from encroot.convert.busy import holders


def process(proc: Path, pid: int, comm: str, *, cwd: str = "/", fds: tuple[str, ...] = (),
            maps: str = "") -> None:
    folder = proc / str(pid)
    (folder / "fd").mkdir(parents=True)
    (folder / "comm").write_text(comm + "\n")
    os.symlink(cwd, folder / "cwd")
    os.symlink("/", folder / "root")
    for number, target in enumerate(fds):
        os.symlink(target, folder / "fd" / str(number))
    (folder / "maps").write_text(maps)


def test_holders_by_cwd_open_file_and_mapping(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    process(proc, 10, "sleep", cwd="/tank/my data/child")
    process(proc, 11, "editor", fds=("/dev/null", "/tank/my data/f"))
    process(proc, 12, "db", maps="7f00-7f01 r--p 00000000 00:1f 12 /tank/my data/lib.so\n")
    process(proc, 13, "elsewhere", cwd="/tank/my database", fds=("/tmp/x",))
    assert holders("/tank/my data", proc=str(proc)) == [
        "pid 10 (sleep)", "pid 11 (editor)", "pid 12 (db)"]
    assert holders("/tank/my data/", proc=str(proc))[0] == "pid 10 (sleep)"
    assert holders("/nothing", proc=str(proc)) == []
    assert holders("/x", proc=str(tmp_path / "missing")) == []
