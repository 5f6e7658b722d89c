"""What one ``zfs send`` sends (``SendSpec``) and the arguments that say it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InvalidProperty
from ..names import SnapshotName, dataset_or_snapshot

__all__ = ["SendSpec", "send_args"]


@dataclass(frozen=True)
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
