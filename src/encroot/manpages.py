"""Man pages and bash completion, generated from the same argparse definitions as ``--help``.

``encroot(8)`` lists the commands; ``encroot-COMMAND(8)`` documents one
command (synopsis, description, options).  The pages are generated into the
source tree's ``man/`` folder (``python -m encroot.manpages man``), installed
with the package under ``share/man/man8`` (``man`` finds pages beside the
``bin`` folder on ``PATH``, so ``man encroot-receive`` works after ``pip
install``), and a unit test fails when they differ from what ``--help`` says.
``completion/encroot`` is the bash completion: commands and options from
the same parser, dataset names from ``zfs list`` (read only when completing).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

from ._version import __version__

__all__ = ["bash_completion", "command_parsers", "pages", "render_page", "write_all"]

SECTION = "8"


def _parser() -> argparse.ArgumentParser:
    from .cli import build_parser

    return build_parser()


def command_parsers(parser: argparse.ArgumentParser | None = None
                    ) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Each command's name and parser, aliases left out, in ``--help`` order."""
    parser = parser or _parser()
    seen: set[int] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if id(sub) not in seen:
                    seen.add(id(sub))
                    yield name, sub


def _roff(text: str) -> str:
    """Escape text for roff: backslashes, and a leading dot or quote on a line."""
    lines = []
    for line in text.replace("\\", "\\e").replace("-", "\\-").splitlines():
        lines.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(lines)


def _options(parser: argparse.ArgumentParser) -> list[str]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            metavar = action.metavar or (action.dest.upper() if action.nargs != 0 else None)
            names = ", ".join(f"\\fB{_roff(o)}\\fR" for o in action.option_strings)
            label = names + (f" \\fI{_roff(str(metavar))}\\fR" if metavar else "")
        else:
            label = f"\\fI{_roff(str(action.metavar or action.dest))}\\fR"
        out += [".TP", label, _roff(action.help or "")]
    return out


def _summary(parser: argparse.ArgumentParser) -> str:
    """The NAME line's text: the description's first sentence."""
    return (parser.description or "").split(". ")[0].rstrip(".")


def render_page(name: str, parser: argparse.ArgumentParser, *,
                see_also: tuple[str, ...] = ()) -> str:
    """The man page of ``name`` (``encroot`` or ``encroot-COMMAND``) from its parser."""
    usage = "\n".join(line.strip() for line in
                      parser.format_usage().removeprefix("usage: ").strip().splitlines())
    lines = [
        f'.TH {name.upper()} {SECTION} "" "encroot {__version__}" "System Administration"',
        ".SH NAME",
        f"{_roff(name)} \\- {_roff(_summary(parser))}",
        ".SH SYNOPSIS",
        ".nf",
        _roff(usage),
        ".fi",
    ]
    if parser.description:
        lines += [".SH DESCRIPTION", _roff(parser.description)]
    if name == "encroot":
        lines += [".SH COMMANDS"]
        for command, sub in command_parsers(parser):
            see = f"See \\fBencroot\\-{_roff(command)}\\fR(8)."
            lines += [".TP", f"\\fBencroot {_roff(command)}\\fR",
                      _roff(sub.description or "") + "\n" + see]
    options = _options(parser)
    if options:
        lines += [".SH OPTIONS", *options]
    if parser.epilog:
        lines += [".SH NOTES", _roff(parser.epilog)]
    lines += [".SH SEE ALSO", ", ".join(f"\\fB{_roff(s)}\\fR(8)" for s in
                                         (*see_also, "zfs", "zpool"))]
    return "\n".join(lines) + "\n"


def pages() -> dict[str, str]:
    """File name -> page text for ``encroot.8`` and every ``encroot-COMMAND.8``."""
    parser = _parser()
    commands = [command for command, _ in command_parsers(parser)]
    result = {f"encroot.{SECTION}": render_page(
        "encroot", parser, see_also=tuple(f"encroot-{c}" for c in commands))}
    for command, sub in command_parsers(parser):
        related = ("encroot", f"zfs-{command}") if command in ("receive", "change-key") \
            else ("encroot",)
        result[f"encroot-{command}.{SECTION}"] = render_page(f"encroot-{command}", sub,
                                                             see_also=related)
    return result


def bash_completion() -> str:
    """A bash completion script: commands, each command's options, dataset names."""
    parser = _parser()
    cases = []
    for command, sub in command_parsers(parser):
        options = sorted(o for a in sub._actions for o in a.option_strings)
        cases.append(f"        {command}) opts={' '.join(options)!r} ;;")
    commands = " ".join(command for command, _ in command_parsers(parser))
    return f"""# bash completion for encroot (generated by encroot.manpages; do not edit)
_encroot() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} command=${{COMP_WORDS[1]}} opts=""
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W "{commands} --help --version" -- "$cur"))
        return
    fi
    case "$command" in
{chr(10).join(cases)}
    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    else
        # dataset names are read from zfs only now, when completing one
        local IFS=$'\\n'
        COMPREPLY=($(compgen -W "$(zfs list -H -o name -t filesystem,volume 2>/dev/null)" \\
            -- "$cur"))
    fi
}}
complete -o default -F _encroot encroot
"""


def write_all(root: Path) -> list[Path]:
    """Write ``root/man/*.8`` and ``root/completion/encroot``; return the paths written."""
    written = []
    (root / "man").mkdir(parents=True, exist_ok=True)
    for file_name, text in pages().items():
        path = root / "man" / file_name
        path.write_text(text)
        written.append(path)
    (root / "completion").mkdir(parents=True, exist_ok=True)
    path = root / "completion" / "encroot"
    path.write_text(bash_completion())
    written.append(path)
    return written


if __name__ == "__main__":
    for written_path in write_all(Path(sys.argv[1] if len(sys.argv) > 1 else ".")):
        print(written_path)
