"""Every exception encroot raises, in one tree.

::

    EncrootError                      base of everything below
    ├── InputError (ValueError)       bad input: nothing was run, nothing changed
    │   ├── InvalidName               dataset, snapshot or pool name breaks a rule
    │   ├── InvalidProperty           property name, value or count breaks a rule
    │   ├── InvalidKey                key material breaks ZFS's rules for its format
    │   └── StreamError               a send stream's header is truncated or malformed
    ├── OwnerAlive                    encroot state held by a live encroot process
    ├── ZfsUnavailable                no zfs/zpool binary, or no ZFS kernel module
    ├── ZfsError                      a zfs/zpool command failed; keeps ZFS's message
    │   ├── DatasetNotFound           "dataset does not exist"
    │   ├── PoolNotFound              "no such pool"
    │   ├── DatasetExists             "dataset already exists"
    │   ├── PermissionDenied          "permission denied"
    │   ├── DatasetBusy               "dataset is busy" / "pool or dataset is busy"
    │   ├── KeyNotLoaded              "encryption key not loaded"
    │   ├── KeyAlreadyLoaded          "Key already loaded for ..."
    │   ├── IncorrectKey              "Incorrect key provided for ..."
    │   ├── NotEncrypted              "'X' is not encrypted."
    │   ├── NotEncryptionRoot         "Keys must be loaded for encryption root of ..."
    │   ├── EncryptionBoundary        receive -F refuses to cross the encryption boundary
    │   ├── FeatureDisabled           a pool feature (e.g. encryption) is not enabled
    │   └── OutOfSpace                "out of space"
    └── LabError                      the QEMU lab could not build or run a guest

A ``ZfsError`` is *permanent* unless its class says ``retryable = True``
(only ``DatasetBusy`` does: the same command may succeed once the holder
lets go).  Messages never contain key material: ZFS itself never prints
keys, and encroot passes keys only through stdin, never argv.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "DatasetBusy",
    "DatasetExists",
    "DatasetNotFound",
    "EncrootError",
    "EncryptionBoundary",
    "FeatureDisabled",
    "IncorrectKey",
    "InputError",
    "InvalidKey",
    "InvalidName",
    "InvalidProperty",
    "KeyAlreadyLoaded",
    "KeyNotLoaded",
    "LabError",
    "NotEncrypted",
    "NotEncryptionRoot",
    "OutOfSpace",
    "OwnerAlive",
    "PermissionDenied",
    "PoolNotFound",
    "StreamError",
    "ZfsError",
    "ZfsUnavailable",
]


class EncrootError(Exception):
    """Base class of every error encroot raises on purpose."""


class InputError(EncrootError, ValueError):
    """Input was rejected before anything ran.

    The message is one line that names the input and the rule it broke.
    """

    def __init__(self, message: str, *, subject: str = "") -> None:
        super().__init__(message)
        self.subject = subject


class InvalidName(InputError):
    """A dataset, snapshot or pool name breaks one of ZFS's naming rules."""


class InvalidProperty(InputError):
    """A property name, value or count breaks one of ZFS's rules."""


class InvalidKey(InputError):
    """Key material does not fit its key format (hex, raw or passphrase)."""


class StreamError(InputError):
    """A ``zfs send`` stream cannot be read: truncated, corrupt, or not a stream at all."""


class OwnerAlive(EncrootError):
    """State encroot left on ZFS belongs to an encroot process that is still running.

    Recovery refuses to touch it (nothing was changed).  ``subject`` is the
    dataset, ``pid`` the owner's process id, ``holder`` its description.
    """

    def __init__(self, *, subject: str, pid: int, holder: str) -> None:
        super().__init__(f"{subject} is held by {holder}; wait for it or stop it "
                         "(nothing was changed)")
        self.subject = subject
        self.pid = pid
        self.holder = holder


class ZfsUnavailable(EncrootError):
    """The zfs/zpool commands or the ZFS kernel module cannot be used here."""


class ZfsError(EncrootError):
    """A zfs or zpool command exited non-zero.

    Attributes:
        argv: the command as run (never holds secrets: keys go through stdin).
        returncode: the command's exit status.
        message: ZFS's own message, the last non-empty line of its stderr.
        stderr: everything the command printed on stderr.
    """

    retryable = False

    def __init__(self, message: str, *, argv: Sequence[str] = (), returncode: int = 1,
                 stderr: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr

    def __str__(self) -> str:
        return self.message


class DatasetNotFound(ZfsError):
    """The named dataset or snapshot does not exist."""


class PoolNotFound(ZfsError):
    """The named pool is not imported."""


class DatasetExists(ZfsError):
    """A dataset, snapshot or pool of that name already exists."""


class PermissionDenied(ZfsError):
    """ZFS refused for lack of privilege (not for a wrong key: see IncorrectKey)."""


class DatasetBusy(ZfsError):
    """The dataset or pool is in use (mounted and open, held, being received)."""

    retryable = True


class KeyNotLoaded(ZfsError):
    """The operation needs the dataset's key loaded, and it is not."""


class KeyAlreadyLoaded(ZfsError):
    """``zfs load-key`` on a dataset whose key is already loaded."""


class IncorrectKey(ZfsError):
    """The key given does not unwrap the dataset's master key."""


class NotEncrypted(ZfsError):
    """A key operation was asked of an unencrypted dataset."""


class NotEncryptionRoot(ZfsError):
    """A key operation was asked of a dataset that inherits its key."""


class EncryptionBoundary(ZfsError):
    """``zfs receive`` refused to change a dataset's encryption state."""


class FeatureDisabled(ZfsError):
    """A pool feature the operation needs (such as encryption) is disabled."""


class OutOfSpace(ZfsError):
    """The pool has no room for the operation."""


class LabError(EncrootError):
    """The QEMU lab could not build an image, boot a guest, or run a job.

    Attributes:
        log: path of the log that holds the details, when there is one.
    """

    def __init__(self, message: str, *, log: str | None = None) -> None:
        super().__init__(message if log is None else f"{message} (log: {log})")
        self.reason = message
        self.log = log
