"""Turn a failed zfs/zpool command into the matching typed exception.

Matching is cautious: each pattern quotes a message OpenZFS prints (with the
source that prints it, checked in 2.1.11, 2.3.4 and 2.4.x), and a message no
pattern knows becomes a plain ``ZfsError`` that still carries ZFS's text.
We never guess a more specific class than the text proves.

libzfs prints errors as ``<context>: <reason>``, e.g.
``cannot open 'tank/x': dataset does not exist`` or
``Key load error: Incorrect key provided for 'tank/x'.``; the reason is what
we match.  The order matters where one text contains another.
"""

from __future__ import annotations

import re

from .. import errors as e
from .runner import Result

__all__ = ["translate"]

_PATTERNS: tuple[tuple[re.Pattern[str], type[e.ZfsError]], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), cls)
    for pattern, cls in (
        # libzfs_crypto.c, zfs_crypto_load_key(): EACCES from lzc_load_key
        (r"Incorrect key provided for", e.IncorrectKey),
        # libzfs_crypto.c: load-key of a loaded key (EEXIST)
        (r"Key already loaded for", e.KeyAlreadyLoaded),
        # libzfs_crypto.c, zfs_crypto_unload_key(): unload of an unloaded key
        (r"Key already unloaded for", e.KeyNotLoaded),
        # libzfs_mount.c, zfs_mount_at(): "cannot mount 'X': encryption key not loaded"
        # libzfs_dataset.c: "encryption root's key is not loaded or provided"
        (r"encryption key not loaded|key is not loaded", e.KeyNotLoaded),
        # libzfs_crypto.c: "'X' is not encrypted."
        (r"' is not encrypted\.", e.NotEncrypted),
        # libzfs_crypto.c: "Keys must be loaded for encryption root of 'X' (Y)."
        (r"Keys must be (?:un)?loaded for encryption root of", e.NotEncryptionRoot),
        # libzfs_crypto.c: "Encryption feature not enabled."
        (r"Encryption feature not enabled", e.FeatureDisabled),
        # libzfs_sendrecv.c, zfs_receive_one()
        (r"cannot perform raw receive on top of existing unencrypted dataset",
         e.EncryptionBoundary),
        (r"zfs receive -F cannot be used to destroy an encrypted filesystem",
         e.EncryptionBoundary),
        # libzfs_pool.c / zpool_main.c: "cannot open 'X': no such pool"
        (r": no such pool\b", e.PoolNotFound),
        # libzfs_util.c zfs_standard_error_fmt(): ENOENT
        (r": dataset does not exist\b|: no such pool or dataset\b", e.DatasetNotFound),
        # ENOENT from zfs list/get on a missing name
        (r"could not find any snapshots to destroy", e.DatasetNotFound),
        # EEXIST: "dataset already exists", "pool or dataset exists", "pool already exists"
        (r"dataset already exists|pool or dataset exists|: pool already exists"
         r"|destination already exists|: a pool with that name already exists",
         e.DatasetExists),
        # EBUSY: "dataset is busy", "pool or dataset is busy", "pool is busy", umount's
        # "target is busy"
        (r"dataset is busy|pool or dataset is busy|: pool is busy|target is busy"
         r"|' is busy\.", e.DatasetBusy),
        # EPERM/EACCES: "permission denied" (zfs_common_error), "Permission denied."
        (r"permission denied", e.PermissionDenied),
        # ENOSPC/EDQUOT: "out of space"
        (r"out of space", e.OutOfSpace),
    )
)


def _lines(stderr: str) -> list[str]:
    return [line.strip() for line in stderr.splitlines() if line.strip()]


def translate(result: Result) -> e.ZfsError:
    """Map a failed command's stderr to the most specific ZfsError it proves.

    The exception's message is the stderr line that proved the class, or
    the last stderr line when no pattern matched.
    """
    lines = _lines(result.stderr)
    fallback = lines[-1] if lines else (
        f"{result.command.argv[0]} exited with status {result.returncode}")
    cls, message = _classify(lines)
    return cls(message or fallback, argv=result.command.argv, returncode=result.returncode,
               stderr=result.stderr)


def _classify(lines: list[str]) -> tuple[type[e.ZfsError], str | None]:
    for pattern, cls in _PATTERNS:
        for line in lines:
            if pattern.search(line):
                return cls, line
    return e.ZfsError, None
