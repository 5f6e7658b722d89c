"""What every ``encroot`` command shares: exit statuses, the parser class, output.

Kept free of any operation's imports, so that an ``encroot`` start loads only
the command it runs (seconds under the lab's emulation).
"""

from __future__ import annotations

import argparse
import enum
import json
import sys
from collections.abc import Sequence

__all__ = ["Exit", "Parser", "Subcommands", "emit", "fail", "quiet", "say_to_stderr"]


class Exit(enum.IntEnum):
    """``encroot``'s exit statuses, one meaning each (``doctor`` documents its own 2)."""

    OK = 0
    FAILED = 1  # an operation failed, or doctor found a warning or worse
    USAGE = 2  # bad input: usage, names, keys
    LAB = 3  # the lab could not build or run a guest
    REMOTE = 4  # a remote host could not be used: unreachable, auth, host key, no/old zfs
    AUDIT_NOT_RUN = 2  # doctor: the audit could not run (an alias of USAGE)
    INTERRUPTED = 130  # SIGINT, as shells report it


class Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line with exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(Exit.USAGE, f"{self.prog}: error: {message}\n")


Subcommands = argparse._SubParsersAction  # the type of add_subparsers()'s result


def say_to_stderr(line: str) -> None:
    """Progress and ``-v`` lines: stderr, flushed, so they interleave with zfs's own."""
    print(line, file=sys.stderr, flush=True)


def quiet(line: str) -> None:
    """The ``say`` of a command run without ``-v``."""
    del line


def emit(as_json: bool, document: dict[str, object], lines: Sequence[str]) -> None:
    """A command's result on stdout: one JSON object, or its text lines."""
    if as_json:
        print(json.dumps(document, indent=2, sort_keys=True))
    else:
        print("\n".join(lines))


def fail(message: str, status: int) -> int:
    """Print ``encroot: MESSAGE`` on stderr; return ``status``."""
    print(f"encroot: {message}", file=sys.stderr)
    return status
