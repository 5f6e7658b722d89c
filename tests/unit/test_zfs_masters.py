"""``SshMasters``: one master per host, opened lazily, refusals typed, closed at the end."""

from __future__ import annotations

import os
import stat

import pytest

from encroot.errors import RemoteAuthFailed, RemoteUnreachable
from encroot.zfs.masters import SshMasters


class FakeSsh:
    def __init__(self, code: int = 0, stderr: str = "") -> None:
        self.code, self.stderr = code, stderr
        self.argvs: list[list[str]] = []

    def __call__(self, argv: list[str]) -> tuple[int, str]:
        self.argvs.append(argv)
        return (self.code, self.stderr) if "-M" in argv or "ControlMaster=yes" in argv \
            else (0, "")


def test_one_master_per_host_in_a_private_folder_then_exit() -> None:
    ssh = FakeSsh()
    with SshMasters(("-F", "cfg"), spawn=ssh) as masters:
        target = masters.target("backup@newhost", "backup@newhost")
        assert target.control_path is not None
        folder = os.path.dirname(target.control_path)
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
        masters.ensure(target)
        masters.ensure(target)
        masters.ensure(masters.target("other"))
    opens = [a for a in ssh.argvs if "ControlMaster=yes" in a]
    exits = [a for a in ssh.argvs if "-O" in a]
    assert len(opens) == 2 and len(exits) == 2
    first = opens[0]
    assert first[-2:] == ["--", "backup@newhost"] and "-N" in first and "-f" in first
    assert "BatchMode=yes" in first and "ControlPersist=60" in first
    assert first.index("-F") < first.index("--")
    assert not os.path.exists(folder)


def test_refusal_names_the_host_and_opens_nothing() -> None:
    ssh = FakeSsh(255, "u@h: Permission denied (publickey).\n")
    with SshMasters(spawn=ssh) as masters:
        target = masters.target("u@h")
        with pytest.raises(RemoteAuthFailed, match=r"^u@h: ssh authentication failed"):
            masters.ensure(target)
        assert masters.opened == {}
    assert not any("-O" in a for a in ssh.argvs)


def test_a_master_that_never_answers_is_unreachable() -> None:
    with SshMasters(spawn=FakeSsh(-1)) as masters:
        with pytest.raises(RemoteUnreachable, match="no ssh connection"):
            masters.ensure(masters.target("h"))
