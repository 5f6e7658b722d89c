"""What one ``zfs send`` sends (``SendSpec``) and the arguments that say it."""

from __future__ import annotations

import re

from ..errors import InvalidProperty, ZfsError
from ..names import SnapshotName, dataset_or_snapshot
from ..records import record

__all__ = ["SendEstimate", "SendSpec", "parse_send_estimate", "send_args"]

_WRAPPED_BELOW_ZERO = 2**63  # a uint64 estimate this large is a negative one, wrapped


@record(frozen=True)
class SendSpec:
    """What one ``zfs send`` sends: a snapshot, optionally from a base, or a resume token.

    Attributes:
        snapshot: the snapshot sent (``pool/fs@snap``); ignored with a token.
        base: with ``intermediates`` ``-I BASE`` (every snapshot between), else
            ``-i BASE``; a clone's origin snapshot makes a clone stream.
        raw: ``-w``, blocks as they are on disk (encrypted data stays encrypted).
        replicate: ``-R``, the dataset's whole tree with properties and snapshots.
        properties: ``-p`` for a single dataset.
        resume_token: ``-t TOKEN``, finishing a partial ``receive -s``.
    """

    snapshot: str = ""
    base: str | None = None
    raw: bool = True
    replicate: bool = False
    properties: bool = False
    intermediates: bool = True
    resume_token: str | None = None

    def describe(self) -> str:
        """The send part of the pipeline, as a user would type it."""
        if self.resume_token is not None:
            return "zfs send -t <token>"
        flags = " ".join(flag for flag, wanted in (
            ("-w", self.raw), ("-R", self.replicate),
            ("-p", self.properties and not self.replicate)) if wanted)
        base = f" {'-I' if self.intermediates else '-i'} {self.base}" if self.base else ""
        return f"zfs send {flags}{base} {self.snapshot}".replace("  ", " ")


def send_args(stream: SendSpec) -> list[str]:
    """The ``zfs send`` arguments (after the program) for ``stream``.

    Raises:
        InvalidProperty: the resume token is not a ``receive_resume_token`` value.
        InvalidName: a snapshot name is not a legal ZFS name.
    """
    if stream.resume_token is not None:
        if not re.fullmatch(r"[0-9a-f]+-[0-9a-f]+-[0-9a-f]+-[0-9a-f]+", stream.resume_token):
            raise InvalidProperty(f"resume token {stream.resume_token[:40]!r}: not a "
                                  "receive_resume_token value", subject="resume token")
        return ["send", "-t", stream.resume_token]
    args = ["send"] + (["-w"] if stream.raw else []) + (["-R"] if stream.replicate else [])
    args += ["-p"] if stream.properties and not stream.replicate else []
    if stream.base is not None:
        args += ["-I" if stream.intermediates else "-i", dataset_or_snapshot(stream.base)]
    return [*args, SnapshotName(stream.snapshot)]


@record(frozen=True)
class SendEstimate:
    """What ``zfs send -nP`` printed: the bytes of each snapshot's stream, and the total.

    ``streams`` holds one ``(snapshot, base, bytes)`` row for each snapshot the
    send would carry (``-R`` and ``-I`` print one row each): ``snapshot`` in full
    (``pool/fs@s2``), ``base`` None for a full stream, else the snapshot it starts
    from as ZFS printed it (``-R`` prints the short name, ``s1``).
    """

    streams: tuple[tuple[str, str | None, int], ...]
    total: int


def parse_send_estimate(out: str) -> SendEstimate:
    """The rows and the ``size`` line of ``zfs send -nP``'s output (libzfs's
    ``send_print_verbose``: ``full\tSNAP\tBYTES``, ``incremental\tBASE\tSNAP\tBYTES``;
    dataset names cannot hold a tab).

    A resumed send's total is the stream's estimate less the bytes the token
    says were received, subtracted unsigned in the kernel (``space -=
    resume_bytes`` in ``zfs_ioc_send_space``). When the stream sent so far
    outgrew the estimate, ZFS prints that difference wrapped past zero, near
    2**64: the rest is small, so it counts as nothing left.

    Raises:
        ZfsError: the output has no ``size`` line.
    """
    streams: list[tuple[str, str | None, int]] = []
    total = None
    for line in out.splitlines():
        fields = line.split("\t")
        if not fields[-1].strip().isdigit():
            continue
        count = int(fields[-1])
        if fields[0] == "size" and len(fields) == 2:
            total = 0 if count >= _WRAPPED_BELOW_ZERO else count
        elif fields[0] == "full" and len(fields) == 3:
            streams.append((fields[1], None, count))
        elif fields[0] == "incremental" and len(fields) == 4:
            streams.append((fields[2], fields[1], count))
    if total is None:
        raise ZfsError(f"zfs send -nP printed no size line: {out[-200:]!r}")
    return SendEstimate(tuple(streams), total)
