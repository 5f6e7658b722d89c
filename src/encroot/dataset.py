"""``Dataset``: the Python API for one dataset's key and user properties.

::

    from encroot import Dataset, Key
    with Key.hex(bytes(32).hex()) as key:
        result = (Dataset("tank/data").change_key(key)
                  .property("oxide:epoch", "2").run())          # or: await ...
    print(result.strategy, result.properties)

``change_key`` returns a builder; ``run()`` (or ``await``) plans and
executes it through ``encroot.rotate``.  ``change_keys`` runs several
builders as one batch: one journal write and one commit per pool.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Mapping
from typing import Any

from .keys import Key, KeyFormat
from .names import DatasetName, UserPropertyName, validate_property_value
from .rotate.plan import ChangeKeyRequest, RotationPlan
from .rotate.recover import RecoveryResult, recover
from .rotate.recover import user_properties as _user_properties
from .rotate.run import ChangeKeyResult, plan_for, rotate_keys
from .zfs import Zfs

__all__ = ["ChangeKey", "Dataset", "change_keys", "change_keys_async"]


class Dataset:
    """A ZFS filesystem or volume, by name (validated; nothing is read until asked)."""

    def __init__(self, name: str, *, zfs: Zfs | None = None) -> None:
        self.name = DatasetName(name)
        self.zfs = zfs if zfs is not None else Zfs()

    def __repr__(self) -> str:
        return f"Dataset({self.name!r})"

    def change_key(self, key: Key | None = None) -> ChangeKey:
        """Start a key change to ``key`` (None for ``inherit()`` or a file:// keylocation)."""
        return ChangeKey(self, key)

    def properties(self) -> dict[str, str]:
        """User properties, never stale: a pending rotation is resolved or raised.

        Raises:
            PendingRotation: a rotation's outcome cannot be told without a key,
                or its writer is still running.
        """
        return _user_properties(self.zfs, self.name)

    def recover(self, *, new_key: Key | None = None, old_key: Key | None = None,
                force: bool = False) -> RecoveryResult:
        """Finish or undo an interrupted rotation (see ``encroot.rotate.recover``)."""
        return recover(self.zfs, self.name, new_key=new_key, old_key=old_key, force=force)


class ChangeKey:
    """A key change being described; ``run()`` or ``await`` carries it out.

    Options mirror ``zfs change-key``: ``keylocation``, ``pbkdf2iters``
    (passphrase keys), ``load_key_first`` (``-l``), ``inherit`` (``-i``).
    """

    def __init__(self, dataset: Dataset, key: Key | None) -> None:
        self.dataset = dataset
        self._key = key
        self._properties: dict[str, str] = {}
        self._options: dict[str, Any] = {}

    def property(self, name: str, value: str) -> ChangeKey:
        """Set user property ``name`` to ``value`` together with the key."""
        checked = UserPropertyName(name)
        self._properties[checked] = validate_property_value(checked, value)
        return self

    def properties(self, values: Mapping[str, str]) -> ChangeKey:
        for name, value in values.items():
            self.property(name, value)
        return self

    def keyformat(self, keyformat: KeyFormat) -> ChangeKey:
        self._options["keyformat"] = keyformat
        return self

    def keylocation(self, location: str) -> ChangeKey:
        self._options["keylocation"] = location
        return self

    def pbkdf2iters(self, iterations: int) -> ChangeKey:
        self._options["pbkdf2iters"] = iterations
        return self

    def load_key_first(self, current_key: Key) -> ChangeKey:
        """Load the current key first if it is not loaded (``zfs change-key -l``)."""
        self._options["load_key"] = current_key
        return self

    def inherit(self) -> ChangeKey:
        """Inherit the parent's key instead of a new one (``zfs change-key -i``)."""
        self._options["inherit"] = True
        return self

    def strategy(self, name: str) -> ChangeKey:
        """auto (default), native, channel-program or journal."""
        self._options["strategy"] = name
        return self

    def request(self) -> ChangeKeyRequest:
        """The validated request (raises InputError on bad input)."""
        return ChangeKeyRequest(self.dataset.name, self._key, self._properties, **self._options)

    def plan(self) -> RotationPlan:
        """Read state and plan, changing nothing (a pending journal is planned against,
        not resolved)."""
        return plan_for(self.dataset.zfs, [self.request()], recover_pending=False)

    def run(self) -> ChangeKeyResult:
        """Change the key and properties; raise RotationFailed (or a refusal) otherwise."""
        return rotate_keys(self.dataset.zfs, [self.request()])[0]

    def __await__(self) -> Generator[Any, None, ChangeKeyResult]:
        import asyncio  # here, not at the top: importing it costs the CLI ~0.5 s

        return asyncio.to_thread(self.run).__await__()


def change_keys(changes: Iterable[ChangeKey], *, zfs: Zfs | None = None) -> list[ChangeKeyResult]:
    """Rotate many datasets as one batch: each ends fully rotated or untouched.

    Raises RotationFailed (with every dataset's result) when any failed.
    """
    changes = list(changes)
    if not changes:
        return []
    runner = zfs if zfs is not None else changes[0].dataset.zfs
    return rotate_keys(runner, [change.request() for change in changes])


async def change_keys_async(changes: Iterable[ChangeKey], *,
                            zfs: Zfs | None = None) -> list[ChangeKeyResult]:
    import asyncio

    return await asyncio.to_thread(change_keys, list(changes), zfs=zfs)
