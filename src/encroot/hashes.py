"""SHA-256 of every file of a mounted file system: ``--verify=mount``'s evidence.

Shared by migrate (goal snapshots of both pools) and convert (the old tree
and its copy), each of which compares two such maps.
"""

from __future__ import annotations

import os

__all__ = ["file_hashes"]


def file_hashes(top: str) -> dict[str, str]:
    """SHA-256 of every regular file below ``top`` (keyed by its path relative to
    ``top``), not entering other file systems and not following symbolic links."""
    import hashlib  # here, not at the top: only --verify=mount pays for the import

    result = {}
    device = os.stat(top).st_dev
    for directory, subdirs, files in os.walk(top):
        subdirs[:] = [d for d in subdirs
                      if os.lstat(os.path.join(directory, d)).st_dev == device]
        for name in files:
            path = os.path.join(directory, name)
            if os.path.isfile(path) and not os.path.islink(path):
                digest = hashlib.sha256()
                with open(path, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(block)
                result[os.path.relpath(path, top)] = digest.hexdigest()
    return result
