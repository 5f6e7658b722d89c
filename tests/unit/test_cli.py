"""The CLI: version, help, and one-line usage errors with exit status 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from encroot import __version__
from encroot.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "encroot.cli", *args], capture_output=True,
                          text=True, check=False)


def test_version() -> None:
    done = run_cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"encroot {__version__}"


def test_help_lists_the_subcommands() -> None:
    done = run_cli("--help")
    assert done.returncode == 0
    assert "lab" in done.stdout
    lab = run_cli("lab", "--help")
    for command in ("build", "run", "test", "shell"):
        assert command in lab.stdout


def test_usage_errors_exit_2_with_one_line() -> None:
    done = run_cli("frobnicate")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "invalid choice" in done.stderr


def test_unknown_lab_version_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "build", "--zfs", "9.9"]) == 2
    err = capsys.readouterr().err
    assert err == "encroot: --zfs '9.9': the lab offers OpenZFS 2.1, 2.3, 2.4\n"
