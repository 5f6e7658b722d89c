"""The CLI with remote pools: ``--ssh-option`` values that start with ``-``, exit status 4
for a host that cannot be used, and one-line refusals of bad locations."""

from __future__ import annotations

import shutil

import pytest

from encroot.cli import main
from encroot.cli.common import Exit
from encroot.cli.remote import join_ssh_options


def test_ssh_option_values_may_start_with_a_dash() -> None:
    assert join_ssh_options(["migrate", "--ssh-option", "-F", "--ssh-option", "/c f", "a",
                             "h:b"]) == ["migrate", "--ssh-option=-F", "--ssh-option=/c f",
                                         "a", "h:b"]
    assert join_ssh_options(["x", "--", "--ssh-option", "-F"]) == [
        "x", "--", "--ssh-option", "-F"]


@pytest.mark.skipif(shutil.which("ssh") is None, reason="no ssh client here")
def test_an_unreachable_host_is_one_line_exit_4(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["status", "--ssh-option", "-oPort=1", "--ssh-option", "-F",
                   "--ssh-option", "/dev/null", "127.0.0.1:tank"])
    err = capsys.readouterr().err
    assert status == Exit.REMOTE and int(Exit.REMOTE) == 4
    assert err.startswith("encroot: 127.0.0.1: unreachable over ssh") and err.count("\n") == 1


def test_a_local_name_with_a_colon_needs_the_escape(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "-n", "tank/a:b", "newtank"]) == Exit.USAGE
    err = capsys.readouterr().err
    assert "'tank/a:b'" in err and "./NAME" in err and err.count("\n") == 1


def test_doctor_fix_is_refused_on_a_remote_pool(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--fix", "h:tank"]) == Exit.USAGE
    assert "--fix on h" in capsys.readouterr().err
    assert main(["status", "h:tank", "g:tank"]) == Exit.USAGE
    assert "several hosts" in capsys.readouterr().err
