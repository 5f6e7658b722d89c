"""The ``stream inspect`` subcommand: what a send stream holds, without ZFS."""

from __future__ import annotations

import argparse
import sys

from ..errors import InputError
from .common import Exit, Parser, Subcommands, emit

__all__ = ["add_stream_commands"]


def add_stream_commands(commands: Subcommands[Parser]) -> None:
    stream = commands.add_parser("stream", help="look at zfs send streams")
    sub = stream.add_subparsers(dest="stream_command", required=True, metavar="COMMAND")
    inspect = sub.add_parser(
        "inspect", help="what a stream holds, from its header",
        description="Read a send stream's header (first records and, for a replication "
                    "package, its list of datasets and snapshots) without ZFS and without "
                    "reading the rest of the stream.")
    inspect.add_argument("--json", action="store_true", help="print one JSON object")
    inspect.add_argument("file", metavar="FILE|-", help="a stream file, or - for stdin")
    inspect.set_defaults(handler=_stream_inspect)


def _stream_inspect(args: argparse.Namespace) -> int:
    from ..errors import StreamError
    from ..stream import peek_stream

    source = "stream on stdin" if args.file == "-" else f"stream file {args.file!r}"
    try:
        if args.file == "-":
            peeked = peek_stream(sys.stdin.fileno())
        else:
            with open(args.file, "rb", buffering=0) as handle:
                peeked = peek_stream(handle.fileno())
    except OSError as exc:
        raise InputError(f"{source}: cannot read it ({exc.strerror})", subject=source) from exc
    except StreamError as exc:
        raise StreamError(f"{source}: {exc}", subject=source) from exc
    info = peeked.info
    lines = [f"{'replication package' if info.package else 'single stream'}: "
             f"{'full' if info.full else 'incremental'}, {'raw' if info.raw else 'not raw'}"
             f"{', resuming' if info.resuming else ''}",
             f"  to: {info.toname} (guid {info.toguid})"]
    if info.fromsnap or info.fromguid:
        lines.append(f"  from: {info.fromsnap or ''} (guid {info.fromguid})")
    lines.append(f"  features: {', '.join(info.features) or '-'}; {info.byte_order}; "
                 f"header {info.header_bytes} bytes")
    for dataset in info.datasets:
        root = " [encryption root]" if dataset.is_encroot else ""
        lines.append(f"  dataset {dataset.name}{root}")
        lines += [f"    @{snap.name} guid {snap.guid}" for snap in dataset.snapshots]
    emit(args.json, info.to_json(), lines)
    return Exit.OK
