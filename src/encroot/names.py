"""Validated names and property values.

A validated value has its own type (``DatasetName``, ``SnapshotName``,
``PoolName``, ``UserPropertyName``): code that acts on ZFS accepts only those,
so raw user input cannot reach a command without passing a check here.  The
rules are OpenZFS's own (``module/zcommon/zfs_namecheck.c`` and
``zfs_prop.c``), with the limits the ZFS ioctls enforce:

- a dataset name is at most 255 bytes (``ZFS_MAX_DATASET_NAME_LEN`` is 256
  with the NUL), its components are non-empty, not ``.`` or ``..``, and use
  only ``A-Z a-z 0-9 - _ . :`` and space, at most 50 levels deep;
- a pool name starts with a letter, is shorter than 240 bytes and is not
  ``mirror``, ``raidz``, ``draid``, ``spare`` or ``log``;
- a user property is ``namespace:name`` in ``a-z 0-9 - _ . :``; encroot caps
  it at 247 bytes so that ``zfs inherit`` can still remove it;
- a property value is at most 8191 bytes (``ZFS_MAXPROPLEN`` is 8192).

Every rejection raises ``InvalidName`` or ``InvalidProperty`` with a
one-line message naming the input and the rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from .errors import InvalidName, InvalidProperty

__all__ = [
    "MAX_DATASET_NAME_BYTES",
    "MAX_PROPERTIES",
    "MAX_PROPERTY_VALUE_BYTES",
    "MAX_USER_PROPERTY_NAME_BYTES",
    "DatasetName",
    "PoolName",
    "SnapshotName",
    "UserPropertyName",
    "dataset_or_snapshot",
    "in_tree",
    "validate_property_value",
    "validate_user_properties",
]

MAX_DATASET_NAME_BYTES = 255
MAX_POOL_NAME_BYTES = 239
MAX_NESTING = 50
MAX_USER_PROPERTY_NAME_BYTES = 247
MAX_PROPERTY_VALUE_BYTES = 8191
MAX_PROPERTIES = 4096

_COMPONENT_CHARS = re.compile(r"[A-Za-z0-9_.: -]*")
_USER_PROP_CHARS = re.compile(r"[a-z0-9_.:-]*")
# The kernel's pool_namecheck() reserves the first three; libzfs adds "spare" and "log".
_RESERVED_POOL_NAMES = frozenset({"mirror", "raidz", "draid", "spare", "log"})


def _show(text: str) -> str:
    """Quote an input for an error message, shortened so the message stays one line."""
    shown = text if len(text) <= 80 else text[:77] + "..."
    return repr(shown)


def _first_bad_char(text: str, allowed: re.Pattern[str]) -> str | None:
    for char in text:
        if not allowed.fullmatch(char):
            return char
    return None


def _check_component(name: str, component: str, what: str) -> None:
    if component == "":
        raise InvalidName(f"{what} {_show(name)}: empty component (leading, trailing or "
                          "double '/')", subject=name)
    if component in (".", ".."):
        raise InvalidName(f"{what} {_show(name)}: component {component!r} is not allowed",
                          subject=name)
    bad = _first_bad_char(component, _COMPONENT_CHARS)
    if bad is not None:
        raise InvalidName(f"{what} {_show(name)}: character {bad!r} is not allowed "
                          "(use letters, digits, '-', '_', '.', ':' and space)", subject=name)


def _check_dataset(name: str, what: str) -> None:
    if not isinstance(name, str):
        raise InvalidName(f"{what} must be a string, not {type(name).__name__}")
    if len(name.encode()) > MAX_DATASET_NAME_BYTES:
        raise InvalidName(f"{what} {_show(name)}: longer than {MAX_DATASET_NAME_BYTES} bytes",
                          subject=name)
    if "@" in name or "#" in name:
        raise InvalidName(f"{what} {_show(name)}: a filesystem or volume name has no '@' or '#'",
                          subject=name)
    components = name.split("/")
    if len(components) - 1 > MAX_NESTING:
        raise InvalidName(f"{what} {_show(name)}: nested deeper than {MAX_NESTING} levels",
                          subject=name)
    for component in components:
        _check_component(name, component, what)
    PoolName._check(components[0], what=what, whole=name)


class PoolName(str):
    """A valid pool name."""

    __slots__ = ()

    def __new__(cls, name: str) -> PoolName:
        cls._check(name)
        return super().__new__(cls, name)

    @staticmethod
    def _check(name: str, *, what: str = "pool name", whole: str | None = None) -> None:
        shown = _show(whole if whole is not None else name)
        if not isinstance(name, str) or name == "":
            raise InvalidName(f"{what} {shown}: empty pool name", subject=str(name))
        if len(name.encode()) > MAX_POOL_NAME_BYTES:
            raise InvalidName(f"{what} {shown}: pool name longer than {MAX_POOL_NAME_BYTES} bytes",
                              subject=name)
        if not name[0].isascii() or not name[0].isalpha():
            raise InvalidName(f"{what} {shown}: a pool name must start with a letter",
                              subject=name)
        bad = _first_bad_char(name, _COMPONENT_CHARS)
        if bad is not None:
            raise InvalidName(f"{what} {shown}: character {bad!r} is not allowed",
                              subject=name)
        if name in _RESERVED_POOL_NAMES:
            raise InvalidName(f"{what} {shown}: {name!r} is a reserved word in zpool",
                              subject=name)


class DatasetName(str):
    """A valid filesystem or volume name (no ``@`` or ``#``)."""

    __slots__ = ()

    def __new__(cls, name: str) -> DatasetName:
        _check_dataset(name, "dataset name")
        return super().__new__(cls, name)

    @property
    def pool(self) -> PoolName:
        return PoolName(self.split("/", 1)[0])

    @property
    def is_pool_root(self) -> bool:
        return "/" not in self

    @property
    def parent(self) -> DatasetName | None:
        """The parent dataset, or None for a pool's root dataset."""
        if self.is_pool_root:
            return None
        return DatasetName(self.rsplit("/", 1)[0])

    @property
    def depth(self) -> int:
        return self.count("/")

    def child(self, relative: str) -> DatasetName:
        """The dataset ``relative`` below this one (``relative`` may hold '/')."""
        return DatasetName(f"{self}/{relative}")

    def snapshot(self, snapname: str) -> SnapshotName:
        return SnapshotName(f"{self}@{snapname}")

    def is_descendant_of(self, other: str) -> bool:
        """True for strict descendants only."""
        return self.startswith(other + "/")


class SnapshotName(str):
    """A valid ``dataset@snapshot`` name."""

    __slots__ = ()

    def __new__(cls, name: str) -> SnapshotName:
        if not isinstance(name, str) or name.count("@") != 1:
            raise InvalidName(f"snapshot name {_show(str(name))}: must be dataset@snapshot "
                              "with exactly one '@'", subject=str(name))
        dataset, snap = name.split("@")
        if len(name.encode()) > MAX_DATASET_NAME_BYTES:
            raise InvalidName(f"snapshot name {_show(name)}: longer than "
                              f"{MAX_DATASET_NAME_BYTES} bytes", subject=name)
        _check_dataset(dataset, "snapshot name")
        if "/" in snap or "#" in snap:
            raise InvalidName(f"snapshot name {_show(name)}: the part after '@' has no '/' or '#'",
                              subject=name)
        _check_component(name, snap, "snapshot name")
        return super().__new__(cls, name)

    @property
    def dataset(self) -> DatasetName:
        return DatasetName(self.split("@", 1)[0])

    @property
    def short(self) -> str:
        """The part after '@'."""
        return self.split("@", 1)[1]


class UserPropertyName(str):
    """A valid user property name, ``namespace:name``."""

    __slots__ = ()

    def __new__(cls, name: str) -> UserPropertyName:
        if not isinstance(name, str):
            raise InvalidProperty(f"user property name must be a string, not {type(name).__name__}")
        if ":" not in name:
            raise InvalidProperty(f"user property {_show(name)}: must contain ':' "
                                  "(namespace:name, e.g. 'com.example:epoch')", subject=name)
        if name.startswith(":"):
            raise InvalidProperty(f"user property {_show(name)}: the namespace before ':' "
                                  "is empty", subject=name)
        if len(name.encode()) > MAX_USER_PROPERTY_NAME_BYTES:
            raise InvalidProperty(f"user property {_show(name)}: longer than "
                                  f"{MAX_USER_PROPERTY_NAME_BYTES} bytes", subject=name)
        bad = _first_bad_char(name, _USER_PROP_CHARS)
        if bad is not None:
            raise InvalidProperty(f"user property {_show(name)}: character {bad!r} is not allowed "
                                  "(use lowercase letters, digits, '-', '_', '.', ':')",
                                  subject=name)
        return super().__new__(cls, name)


def in_tree(name: str, root: str) -> bool:
    """``name`` is ``root`` itself or a dataset, snapshot or bookmark in ``root``'s tree
    (for sorting the rows of one ``zfs get`` that named several roots)."""
    return name == root or name.startswith((root + "/", root + "@", root + "#"))


def dataset_or_snapshot(name: str) -> DatasetName | SnapshotName:
    """``name`` validated as a snapshot when it has an ``@``, else as a dataset.

    Raises:
        InvalidName: not a legal ZFS name of that kind.
    """
    return SnapshotName(name) if "@" in name else DatasetName(name)


def validate_property_value(name: str, value: str) -> str:
    """Return ``value`` if ZFS can store it as the value of property ``name``.

    Raises:
        InvalidProperty: not a string, a NUL byte, not UTF-8, or longer than ZFS allows.
    """
    if not isinstance(value, str):
        raise InvalidProperty(f"value of {name}: must be a string, not {type(value).__name__}",
                              subject=name)
    if "\0" in value:
        raise InvalidProperty(f"value of {name}: contains a NUL byte", subject=name)
    try:
        size = len(value.encode())
    except UnicodeEncodeError as exc:
        raise InvalidProperty(f"value of {name}: not valid UTF-8 text", subject=name) from exc
    if size > MAX_PROPERTY_VALUE_BYTES:
        raise InvalidProperty(f"value of {name}: {size} bytes, more than "
                              f"{MAX_PROPERTY_VALUE_BYTES}", subject=name)
    return value


def validate_user_properties(
    properties: Mapping[str, str] | Iterable[tuple[str, str]],
) -> dict[UserPropertyName, str]:
    """Validate user properties for one operation; return them with validated names.

    Raises:
        InvalidProperty: a name that is not ``namespace:property`` as ZFS requires, a
            name given twice, a bad value, or more properties than ZFS takes at once.
    """
    pairs = properties.items() if isinstance(properties, Mapping) else properties
    result: dict[UserPropertyName, str] = {}
    for raw_name, value in pairs:
        name = UserPropertyName(raw_name)
        if name in result:
            raise InvalidProperty(f"user property {_show(name)}: given twice", subject=name)
        result[name] = validate_property_value(name, value)
        if len(result) > MAX_PROPERTIES:
            raise InvalidProperty(f"more than {MAX_PROPERTIES} properties in one operation")
    return result
