"""Parsers for what zfs/zpool print: ``-H -p`` tables, ``-j`` JSON, ``zfs version``.

All functions here are pure (text in, records out) so the unit tests cover
them without ZFS; the lab tests feed them real output of each OpenZFS
version.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence

from ..errors import ZfsError
from ..records import field, record

__all__ = [
    "PoolListing",
    "PropertyTable",
    "PropertyValue",
    "ZfsVersion",
    "parse_get_json",
    "parse_get_table",
    "parse_pool_listing",
    "parse_version",
]


@record(frozen=True)
class PropertyValue:
    """One property of one dataset as ZFS reports it.

    ``source`` uses the ``-H`` wording on every version: ``local``,
    ``default``, ``received``, ``temporary``, ``-`` (none), or
    ``inherited from NAME``.
    """

    value: str
    source: str

    @property
    def inherited_from(self) -> str | None:
        prefix = "inherited from "
        return self.source[len(prefix):] if self.source.startswith(prefix) else None

    @property
    def is_local(self) -> bool:
        return self.source == "local"


@record
class PropertyTable:
    """Properties of many datasets, read in one ``zfs get``: ``table[name][prop]``.

    Datasets keep the order ZFS listed them in (parents before children).
    """

    datasets: dict[str, dict[str, PropertyValue]] = field(default_factory=dict)

    def __getitem__(self, name: str) -> dict[str, PropertyValue]:
        return self.datasets[name]

    def __contains__(self, name: object) -> bool:
        return name in self.datasets

    def __iter__(self) -> Iterator[str]:
        return iter(self.datasets)

    def __len__(self) -> int:
        return len(self.datasets)

    def value(self, name: str, prop: str) -> str | None:
        """The value of ``prop`` on ``name``, or None when ZFS did not report it."""
        entry = self.datasets.get(name, {}).get(prop)
        return None if entry is None else entry.value

    def add(self, name: str, prop: str, value: PropertyValue) -> None:
        self.datasets.setdefault(name, {})[prop] = value


# A row starts with a dataset/snapshot name and a property name; a value line
# that continues a multi-line user property value cannot look like that unless
# the value itself imitates a row, which encroot never writes.
_ROW_START = re.compile(r"^[A-Za-z0-9_.: /@#%-]+\t[a-z0-9_.:@-]+\t")


def parse_get_table(text: str) -> PropertyTable:
    """Parse ``zfs get -H -p -o name,property,value,source`` output.

    Columns are tab-separated.  A user property value may itself hold tabs
    or newlines; the name, property and source columns cannot, so a row is
    name, property, then everything up to the last tab as the value.  Lines
    that do not start a row continue the previous row's value.
    """
    rows: list[list[str]] = []
    for line in text.split("\n"):
        if _ROW_START.match(line):
            rows.append([line])
        elif rows:
            rows[-1].append(line)
    table = PropertyTable()
    for lines in rows:
        while len(lines) > 1 and lines[-1] == "":
            lines.pop()
        name, prop, rest = "\n".join(lines).split("\t", 2)
        value, _, source = rest.rpartition("\t")
        table.add(name, prop, PropertyValue(value, source))
    return table


@record(frozen=True)
class PoolListing:
    """One imported pool as ``zpool list -v -H -P -o name,PROPS NAME`` shows it.

    Attributes:
        name: the pool.
        properties: each asked property (features too: ``feature@encryption``) and its
            value as ``zpool list`` prints it.
        devices: the full paths of its leaf devices or files, in listing order.
    """

    name: str
    properties: Mapping[str, str]
    devices: tuple[str, ...]


def parse_pool_listing(text: str, properties: Sequence[str]) -> PoolListing | None:
    """Parse ``zpool list -v -H -P -o name,PROPS POOL`` (one pool); None if no pool row.

    The pool's row starts with its name, then the values of ``properties`` in
    order, tab-separated (``print_pool`` in ``cmd/zpool/zpool_main.c``, 2.1 to
    2.4). The vdev rows start with a tab and the vdev's name, a full path for a
    device or file with ``-P``, then fixed statistics columns whatever ``-o`` says
    (``print_list_stats``); class headers (``logs``, ``cache``...) and vdev types
    (``mirror-0``) are not paths.
    """
    pool: PoolListing | None = None
    devices = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line.startswith("\t") and pool is None:
            name, *values = line.split("\t")
            pool = PoolListing(name, dict(zip(properties, values, strict=False)), ())
            continue
        first = line.strip().split("\t")[0]
        if first.startswith("/"):
            devices.append(first)
    return None if pool is None else PoolListing(pool.name, pool.properties, tuple(devices))


_JSON_SOURCES = {
    "LOCAL": "local",
    "DEFAULT": "default",
    "RECEIVED": "received",
    "TEMPORARY": "temporary",
    "NONE": "-",
}


def parse_get_json(text: str) -> PropertyTable:
    """Parse ``zfs get -j -p`` output (OpenZFS 2.3 and later).

    Shape: ``{"datasets": {NAME: {"properties": {PROP: {"value": V,
    "source": {"type": T, "data": D}}}}}}``; an inherited source has type
    ``INHERITED`` and the parent's name in ``data``.

    Raises:
        ZfsError: the text is not that shape (an OpenZFS whose ``-j`` output changed).
    """
    try:
        datasets = json.loads(text)["datasets"]
        table = PropertyTable()
        for name, entry in datasets.items():
            for prop, record in entry.get("properties", {}).items():
                table.add(name, prop, PropertyValue(_json_text(record.get("value")),
                                                    _json_source(record.get("source"))))
    except (ValueError, LookupError, TypeError, AttributeError) as exc:
        raise ZfsError(f"zfs get -j printed output encroot cannot read: {exc!r}"[:300]) from exc
    return table


def _json_text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _json_source(source: object) -> str:
    if not isinstance(source, Mapping):
        return "-"
    kind = str(source.get("type", "NONE"))
    if kind == "INHERITED":
        return f"inherited from {source.get('data', '')}"
    return _JSON_SOURCES.get(kind, kind.lower())


_VERSION_LINE = re.compile(r"^zfs(?P<kmod>-kmod)?-(?P<text>(?P<num>\d+(?:\.\d+)*)\S*)$")


@record(frozen=True, order=True)
class ZfsVersion:
    """Installed OpenZFS versions: the userland tools and the loaded kernel module.

    ``userland``/``kernel`` are numeric tuples such as (2, 3, 2); the
    ``*_text`` fields keep the full strings (``2.3.2-2~bpo12+2``) for reports.
    ``kernel`` is None when the module is not loaded.
    """

    userland: tuple[int, ...]
    userland_text: str
    kernel: tuple[int, ...] | None = None
    kernel_text: str | None = None

    def at_least(self, *version: int) -> bool:
        """True when both userland and the loaded module are at least ``version``."""
        oldest = self.userland if self.kernel is None else min(self.userland, self.kernel)
        return oldest >= version

    def __str__(self) -> str:
        kmod = self.kernel_text or "not loaded"
        return f"zfs-{self.userland_text} (kmod {kmod})"


def parse_version(text: str) -> ZfsVersion:
    """Parse ``zfs version`` output, e.g. ``zfs-2.1.11-1`` / ``zfs-kmod-2.1.11-1``."""
    userland: tuple[tuple[int, ...], str] | None = None
    kernel: tuple[tuple[int, ...], str] | None = None
    for line in text.splitlines():
        match = _VERSION_LINE.match(line.strip())
        if not match:
            continue
        parsed = (tuple(int(part) for part in match["num"].split(".")), match["text"])
        if match["kmod"]:
            kernel = parsed
        else:
            userland = parsed
    if userland is None:
        raise ZfsError(f"cannot read the OpenZFS version from {text.strip()[:120]!r}")
    return ZfsVersion(userland[0], userland[1],
                      kernel[0] if kernel else None, kernel[1] if kernel else None)
