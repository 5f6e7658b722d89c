"""Man pages and bash completion: generated from the CLI's own definitions, kept current."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from encroot.manpages import bash_completion, command_parsers, pages

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_pages_and_completion_are_what_help_says_now() -> None:
    """Regenerate with `python -m encroot.manpages .` after changing a command's options."""
    expected = pages()
    committed = {p.name: p.read_text() for p in (ROOT / "man").glob("*.8")}
    assert committed == expected
    assert (ROOT / "completion" / "encroot").read_text() == bash_completion()


def test_a_page_per_command_naming_its_options() -> None:
    generated = pages()
    for command, parser in command_parsers():
        page = generated[f"encroot-{command}.8"]
        assert page.startswith(f".TH ENCROOT-{command.upper()} 8 ")
        for action in parser._actions:
            for option in action.option_strings:
                assert "\\fB" + option.replace("-", "\\-") + "\\fR" in page, (command, option)
    assert "encroot\\-receive" in generated["encroot.8"]
    assert "\\fBzfs\\-receive\\fR(8)" in generated["encroot-receive.8"]


@pytest.mark.skipif(shutil.which("groff") is None, reason="needs groff to render the page")
def test_man_renders_a_page_without_warnings(tmp_path: Path) -> None:
    page = tmp_path / "encroot-receive.8"
    page.write_text(pages()["encroot-receive.8"])
    done = subprocess.run(["groff", "-man", "-Tutf8", "-ww", str(page)], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0 and done.stderr == ""
    assert "allow-encryption-change" in done.stdout.replace("\u2010", "-")


def test_completion_offers_commands_options_and_dataset_names() -> None:
    script = bash_completion()
    assert ("receive change-key recover get doctor status migrate encrypt reencrypt decrypt "
            "stream lab") in script
    assert "--allow-encryption-change" in script and "--key-file" in script
    assert "zfs list -H -o name -t filesystem,volume" in script
    assert script.rstrip().endswith("complete -o default -F _encroot encroot")
