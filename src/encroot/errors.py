"""Every exception encroot raises, in one tree.

::

    EncrootError                      base of everything below
    ├── InputError (ValueError)       bad input: nothing was run, nothing changed
    │   ├── InvalidName               dataset, snapshot or pool name breaks a rule
    │   ├── InvalidProperty           property name, value or count breaks a rule
    │   ├── InvalidKey                key material breaks ZFS's rules for its format
    │   └── StreamError               a send stream's header is truncated or malformed
    ├── OwnerAlive                    encroot state held by a live encroot process
    ├── ReceiveRefused                a replacement's precondition failed (nothing changed)
    ├── SwapPending                   a verified replacement waits: the old tree was busy
    ├── MigrateRefused                a migration's precondition failed (nothing changed)
    ├── ConvertRefused                an encrypt/reencrypt/decrypt precondition failed
    ├── RotationRefused               a key rotation's precondition failed (nothing changed)
    │   └── StrategyUnavailable       the requested rotation strategy does not exist here
    ├── PendingRotation               a rotation journal is pending and cannot be resolved yet
    ├── RotationFailed                some datasets of a batch were not rotated (``results``)
    ├── VerificationFailed            ZFS shows something else than an operation promised
    ├── ZfsUnavailable                no zfs/zpool binary, or no ZFS kernel module
    ├── RemoteError                   a remote host could not be used over ssh (``host``)
    │   ├── RemoteUnreachable         no connection: refused, timed out, unknown name
    │   ├── RemoteAuthFailed          ssh authentication failed (BatchMode: no prompt)
    │   ├── RemoteHostKey             the host key is unknown or changed
    │   ├── RemoteZfsMissing          ``zfs``/``zpool`` not found there (exit 127)
    │   ├── RemoteZfsTooOld           its OpenZFS is older than encroot supports
    │   └── RemoteConnectionLost      the connection broke while a command ran
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

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up)
if TYPE_CHECKING:
    from .rotate.run import ChangeKeyResult

__all__ = [
    "ConvertRefused",
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
    "MigrateRefused",
    "NotEncrypted",
    "NotEncryptionRoot",
    "OutOfSpace",
    "OwnerAlive",
    "PendingRotation",
    "PermissionDenied",
    "PoolNotFound",
    "ReceiveRefused",
    "RemoteAuthFailed",
    "RemoteConnectionLost",
    "RemoteError",
    "RemoteHostKey",
    "RemoteUnreachable",
    "RemoteZfsMissing",
    "RemoteZfsTooOld",
    "RotationFailed",
    "RotationRefused",
    "StrategyUnavailable",
    "StreamError",
    "SwapPending",
    "VerificationFailed",
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


class ReceiveRefused(EncrootError):
    """A precondition of ``encroot receive`` failed; nothing was changed.

    The message says which and why.
    """


class SwapPending(EncrootError):
    """A replacement was received and verified, but the swap failed (the old tree was busy).

    Nothing was destroyed: the old tree is mounted as before, the verified new
    tree waits under the temporary name, and ``encroot receive --recover
    TARGET`` swaps it in once the old tree is no longer busy.  ``target`` and
    ``waiting`` (the temporary) name them.
    """

    def __init__(self, *, target: str, waiting: str, reason: str) -> None:
        super().__init__(f"{target}: the swap did not happen ({reason}); the new tree is "
                         f"received and verified as {waiting}, {target} is as it was and "
                         "nothing was destroyed; run `encroot receive --recover "
                         f"{target}` to swap it in once {target} is no longer busy")
        self.target = target
        self.waiting = waiting


class MigrateRefused(EncrootError):
    """A precondition of ``encroot migrate`` failed; nothing was changed.

    The message says how to fix it.
    """


class ConvertRefused(EncrootError):
    """A precondition of ``encroot encrypt|reencrypt|decrypt`` failed; nothing was changed.

    The message names the dataset, the rule and what to do instead.
    """


class RotationRefused(EncrootError):
    """A precondition failed; nothing was changed.  The message says which and how to fix it."""


class StrategyUnavailable(RotationRefused):
    """The requested strategy does not exist on this system (no fallback is taken)."""


class PendingRotation(EncrootError):
    """A rotation's journal is pending and could not be resolved from the evidence at hand.

    ``dataset`` is the dataset whose journal is pending.
    """

    def __init__(self, message: str, *, dataset: str) -> None:
        super().__init__(message)
        self.dataset = dataset


class RotationFailed(EncrootError):
    """Some datasets of a batch were not rotated; ``results`` says which and why."""

    def __init__(self, message: str, *, results: Sequence[ChangeKeyResult]) -> None:
        super().__init__(message)
        self.results = list(results)


class VerificationFailed(EncrootError):
    """What ZFS shows after an operation differs from what it promised.

    The message lists the differences; the operation changed nothing after it
    found them (receive: the old target is intact; migrate: SRC is untouched).
    """


class ZfsUnavailable(EncrootError):
    """The zfs/zpool commands or the ZFS kernel module cannot be used here."""


class RemoteError(EncrootError):
    """A remote host could not be used over ssh; the message is one line naming the host.

    Every kind but ``RemoteConnectionLost`` is found before the remote command
    runs (at the first connection, or the version check that follows), so
    nothing was changed on either side.

    Attributes:
        host: the host as the user named it (``[USER@]HOST``).
        detail: ssh's own message (its last line), or what encroot found.
    """

    def __init__(self, message: str, *, host: str, detail: str = "") -> None:
        super().__init__(message)
        self.host = host
        self.detail = detail


class RemoteUnreachable(RemoteError):
    """ssh could not connect: connection refused or timed out, no route, unknown name."""


class RemoteAuthFailed(RemoteError):
    """The host refused every key ssh offered (``Permission denied``)."""


class RemoteHostKey(RemoteError):
    """The host's key is not in the known hosts, or differs from the one recorded there."""


class RemoteZfsMissing(RemoteError):
    """The remote shell found no ``zfs`` or ``zpool`` (exit status 127)."""


class RemoteZfsTooOld(RemoteError):
    """The remote OpenZFS is older than the oldest one encroot supports (2.1)."""


class RemoteConnectionLost(RemoteError):
    """The ssh connection broke while a command ran (what it did is what ZFS shows now)."""


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
