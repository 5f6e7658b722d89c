"""``--verify=mount``: every file of the old tree against the new one, during the downtime.

At cutover, after the last incrementals, each file system that cutover
unmounted is mounted again read-only (``zfs mount -o ro``: nothing can write
to it, so nothing written after the final snapshot can be lost), beside its
copy in the new tree (mounted read-only at its own mount point below
``X.encroot-convert``), and the SHA-256 of every regular file is compared;
both are unmounted again before the swap, whatever the outcome.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ZfsError
from ..hashes import file_hashes
from ..zfs import Zfs
from .model import ConvertRequest

__all__ = ["compare_files"]


def compare_files(zfs: Zfs, request: ConvertRequest,
                  names: Sequence[str]) -> tuple[list[str], int]:
    """The differences between each old file system in ``names`` and its copy, and how
    many files were compared."""
    mounted: list[str] = []
    problems: list[str] = []
    compared = 0
    try:
        for name in sorted(names, key=lambda n: n.count("/")):  # parents first
            for which in (name, request.new_name(name)):
                zfs.mount(which, options=("ro",))
                mounted.append(which)
        table = zfs.get(mounted, ("mountpoint",), use_json=False)
        for name in names:
            old = table.value(name, "mountpoint") or ""
            new = table.value(request.new_name(name), "mountpoint") or ""
            ours, theirs = file_hashes(old), file_hashes(new)
            compared += len(ours)
            for path in sorted(set(ours) | set(theirs)):
                if ours.get(path) != theirs.get(path):
                    problems.append(f"{name}: {path} differs" if path in ours and path in
                                    theirs else f"{name}: {path} is only in "
                                    f"{'the old tree' if path in ours else 'the new tree'}")
    finally:
        for which in reversed(mounted):
            try:
                zfs.unmount(which)
            except ZfsError as exc:
                problems.append(f"could not unmount {which} after comparing: {exc}")
    return problems, compared
