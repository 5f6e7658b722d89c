"""The CLI: version, help, and one-line usage errors with exit status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


@pytest.mark.parametrize(("args", "message"), [
    (["receive", "--allow-encryption-change", "tank/x"], "requires -F"),
    (["receive", "-F", "-o", "novalue", "--allow-encryption-change", "tank/x"],
     "expected property=value"),
    (["receive", "-F", "--allow-encryption-change", "tank/../x"], "dataset name"),
    (["receive", "-F", "--keep-old", "tank/old", "tank/x"], "goes with"),
])
def test_receive_input_errors_exit_2_before_touching_zfs(
        args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_receive_with_encroots_additions_is_parsed_by_encroot() -> None:
    done = run_cli("receive", "-Fu", "-M", "--allow-encryption-change", "tank/x")
    assert done.returncode == 2 and "unrecognized arguments: -M" in done.stderr
    assert "-Fu" not in done.stderr  # bundled flags are understood


def test_receive_names_from_the_stream_one_way_and_never_with_a_snapshot() -> None:
    for option in ("-h", "-M", "-c", "-A"):
        refused = run_cli("receive", "-Fu", option, "--allow-encryption-change", "tank/x")
        assert refused.returncode == 2 and f"unrecognized arguments: {option}" in refused.stderr
    both = run_cli("receive", "-Fud", "-e", "--allow-encryption-change", "tank/x")
    assert both.returncode == 2 and "argument -e: not allowed with argument -d" in both.stderr
    snap = run_cli("receive", "-Fue", "--allow-encryption-change", "tank/x@s")
    assert snap.returncode == 2
    assert snap.stderr == ("encroot: target 'tank/x@s': invalid argument - snapshot not "
                           "allowed with -e\n")


def test_stream_inspect_of_a_sample(capsys: pytest.CaptureFixture[str]) -> None:
    sample = Path(__file__).parent.parent / "data" / "streams" / "raw-replication.zstream"
    assert main(["stream", "inspect", str(sample)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("replication package: full, raw")
    assert "dataset p/enc/child/grandchild" in out


def test_stream_inspect_of_garbage_names_the_file(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"x" * 400)
    assert main(["stream", "inspect", str(garbage)]) == 2
    assert f"stream file '{garbage}': not a zfs send stream" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "message"), [
    (["change-key", "-o", "atime=on", "--key-stdin", "tank/a"], "-o atime"),
    (["change-key", "-o", "x:e", "--key-stdin", "tank/a"], "expected PROP=VALUE"),
    (["change-key", "-o", "x:e=1", "-o", "x:e=2", "--key-stdin", "tank/a"], "given twice"),
    (["change-key", "--key-file", "/nonexistent", "tank/a", "tank/b"], "once per dataset"),
    (["change-key", "--key-stdin", "tank/a", "tank/b"], "one key for one dataset"),
    (["change-key", "-i", "--key-stdin", "tank/a"], "-i inherits"),
    (["change-key", "--key-file", "/nonexistent/k", "tank/a"], "cannot read it"),
    (["change-key", "--current-key-file", "/k", "--key-stdin", "tank/a"], "with -l only"),
    (["change-key", "-o", "keyformat=des", "--key-stdin", "tank/a"], "hex, raw or passphrase"),
    (["change-key", "--key-stdin", "tank/a@s"], "'@'"),
    (["recover", "tank/a#b"], "'#'"),
])
def test_change_key_input_errors(args: list[str], message: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_change_key_help_names_the_contract_flags() -> None:
    done = run_cli("change-key", "--help")
    for flag in ("-l", "-i", "-o", "--key-file", "--key-stdin", "--strategy", "-n", "--json",
                 "auto,native,channel-program,journal"):
        assert flag in done.stdout, flag
    assert "recover" in run_cli("--help").stdout


@pytest.mark.parametrize(("command", "absent"), [
    ("receive", ("encroot.doctor", "encroot.migrate", "encroot.rotate")),
    ("change-key", ("encroot.doctor", "encroot.migrate", "encroot.receive")),
    ("stream", ("encroot.doctor", "encroot.migrate", "encroot.rotate", "encroot.receive")),
])
def test_a_command_imports_only_its_own_operation(command: str, absent: tuple[str, ...]) -> None:
    """Each `encroot` start pays only for what it runs (seconds under the lab's emulation)."""
    probe = ("import sys; from encroot.cli import build_parser; "
             f"build_parser([{command!r}, '--help-not-parsed']); "
             "print(' '.join(sorted(m for m in sys.modules if m.startswith('encroot'))))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True).stdout.split()
    assert "encroot.cli" in loaded
    for module in absent:
        assert module not in loaded, f"{command} imported {module}"


def test_an_unknown_command_still_lists_every_command() -> None:
    done = run_cli("bogus")
    assert done.returncode == 2
    for command in ("receive", "change-key", "doctor", "migrate", "stream", "lab"):
        assert command in done.stderr


def test_command_modules_share_only_public_names() -> None:
    """The CLI package's modules import no private name from one another (issue 12, item 7)."""
    import ast

    import encroot.cli

    package = Path(encroot.cli.__file__).parent
    private = []
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                private += [f"{path.name}: {alias.name}" for alias in node.names
                            if alias.name.startswith("_")]
    assert private == []
    assert len(list(package.glob("*.py"))) >= 10, "the CLI package has lost its modules"
