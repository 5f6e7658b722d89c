"""The one marker format and its parser.

Every marker encroot writes is one user property whose value is compact JSON::

    {"format": 2, "op": "receive", "role": "verified",
     "owner": {"host": "...", "boot_id": "...", "pid": 1234, "start": "5678"},
     "data": {"guid": "1234567890", "keep_old": null}}

``format`` is this format's version; ``op`` and ``role`` name the typed
marker (one frozen record per operation and role, below); ``owner`` is
the writing process (``Owner``) or null when unknown; ``data`` is the typed
payload, exactly the record's fields.

``parse_marker(property, value)`` returns a typed marker or ``NotOurs`` with
the reason; it never raises for foreign content and never guesses: unknown
keys, wrong types, a role that does not belong to the property, truncated
JSON and a newer format are all ``NotOurs``.  The forms encroot 0.x wrote
are recognised too and parse to the same types with ``owner=None`` (an
unknown owner counts as dead):

- ``encroot:recv-verified=GUID`` or ``GUID keep-old=NAME``;
- ``encroot:recv-replaced=X`` (the target's name);
- ``encroot:migrate={"source", "snapshot", "stage", "devices"}`` (JSON without
  ``format``; ``devices`` space-separated): a cutover;
- ``encroot:rotation={... "version": 1, "owner": {...}}``: a journal.

``encroot:convert`` and ``encroot:convert-replaced`` exist only in format 2.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

from ..errors import InputError
from ..names import DatasetName
from ..records import fields, record
from .owner import Owner
from .registry import (
    CONVERT_MARKER,
    CONVERT_REPLACED,
    MIGRATE_MARKER,
    RECV_REPLACED,
    RECV_VERIFIED,
    ROTATION_MARKER,
)

__all__ = [
    "CONVERSIONS",
    "FORMAT",
    "ConvertKept",
    "ConvertPhase",
    "ConvertReplaced",
    "ConvertVerified",
    "Marker",
    "MigrateCutover",
    "MigratePhase",
    "NotOurs",
    "ReceiveInProgress",
    "ReceiveReplaced",
    "ReceiveVerified",
    "RotationJournal",
    "dumps",
    "marker_types_table",
    "parse_marker",
]

FORMAT = 2
CONVERSIONS = ("encrypt", "reencrypt", "decrypt")


@record(frozen=True)
class NotOurs:
    """A value encroot did not write (or cannot read): why, for messages and doctor."""

    property: str
    reason: str


class _Bad(ValueError):
    """The payload does not have the shape of its marker."""


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise _Bad(f"{key!r} must be a string")
    return value


def _optional_text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise _Bad(f"{key!r} must be a string or null")
    return value


def _dataset(data: dict[str, Any], key: str) -> str:
    value = _text(data, key)
    try:
        return str(DatasetName(value))
    except InputError as exc:
        raise _Bad(f"{key!r} is not a dataset name ({exc})") from None


class _Payload:
    """The common part of every typed marker."""

    PROPERTY: ClassVar[str]
    OP: ClassVar[str]
    ROLE: ClassVar[str]
    owner: Owner | None

    def payload(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self)
                  if f.name != "owner"}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}

    def dumps(self) -> str:
        return dumps(self)  # type: ignore[arg-type]


@record(frozen=True, kw_only=True)
class ReceiveInProgress(_Payload):
    """On ``X.encroot-recv`` from its creation (``zfs receive -o``): who receives into it.

    The same property later holds the ``ReceiveVerified`` marker.
    """

    PROPERTY: ClassVar[str] = RECV_VERIFIED
    OP: ClassVar[str] = "receive"
    ROLE: ClassVar[str] = "receiving"
    target: str
    owner: Owner | None = None

    @classmethod
    def from_payload(cls, data: dict[str, Any], owner: Owner | None) -> ReceiveInProgress:
        return cls(target=_dataset(data, "target"), owner=owner)


@record(frozen=True, kw_only=True)
class ReceiveVerified(_Payload):
    """On ``X.encroot-recv`` (later on the new X): every GUID and the encryption were checked.

    ``guid`` is the stream's top snapshot; ``keep_old`` the ``--keep-old`` name.
    """

    PROPERTY: ClassVar[str] = RECV_VERIFIED
    OP: ClassVar[str] = "receive"
    ROLE: ClassVar[str] = "verified"
    guid: str
    keep_old: str | None = None
    owner: Owner | None = None

    @classmethod
    def from_payload(cls, data: dict[str, Any], owner: Owner | None) -> ReceiveVerified:
        guid = _text(data, "guid")
        if not guid.isdigit():
            raise _Bad("'guid' must be decimal digits")
        keep = _optional_text(data, "keep_old")
        if keep is not None:
            keep = _dataset(data, "keep_old")
        return cls(guid=guid, keep_old=keep, owner=owner)


@record(frozen=True, kw_only=True)
class ReceiveReplaced(_Payload):
    """On the old tree, right before it is renamed away from ``target``."""

    PROPERTY: ClassVar[str] = RECV_REPLACED
    OP: ClassVar[str] = "receive"
    ROLE: ClassVar[str] = "replaced"
    target: str
    owner: Owner | None = None

    @classmethod
    def from_payload(cls, data: dict[str, Any], owner: Owner | None) -> ReceiveReplaced:
        return cls(target=_dataset(data, "target"), owner=owner)


@record(frozen=True, kw_only=True)
class MigratePhase(_Payload):
    """On DST's root while a phase runs (before its first change until its end)."""

    PROPERTY: ClassVar[str] = MIGRATE_MARKER
    OP: ClassVar[str] = "migrate"
    ROLE: ClassVar[str] = "phase"
    source: str
    phase: str
    owner: Owner | None = None

    @classmethod
    def from_payload(cls, data: dict[str, Any], owner: Owner | None) -> MigratePhase:
        phase = _text(data, "phase")
        if phase not in ("initial", "catch-up", "cutover"):
            raise _Bad(f"'phase' {phase!r} is not a phase")
        return cls(source=_dataset(data, "source"), phase=phase, owner=owner)


@record(frozen=True, kw_only=True)
class MigrateCutover(_Payload):
    """On DST's root once cutover began re-parenting: no raw incremental may follow.

    ``devices``: the folders of DST's devices, for ``zpool import -d``.
    """

    PROPERTY: ClassVar[str] = MIGRATE_MARKER
    OP: ClassVar[str] = "migrate"
    ROLE: ClassVar[str] = "cutover"
    source: str
    snapshot: str
    stage: str = "reparent"
    devices: tuple[str, ...] = ()
    owner: Owner | None = None

    @classmethod
    def from_payload(cls, data: dict[str, Any], owner: Owner | None) -> MigrateCutover:
        devices = data.get("devices", [])
        if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
            raise _Bad("'devices' must be a list of strings")
        return cls(source=_dataset(data, "source"), snapshot=_text(data, "snapshot"),
                   stage=_text(data, "stage"), devices=tuple(devices), owner=owner)


@record(frozen=True, kw_only=True)
class RotationJournal(_Payload):
    """``encroot:rotation``: enough to decide a key rotation after a crash.

    ``old_*`` are the dataset's key properties before the rotation; the
    ``new_*`` fields are what the change-key asked for (None: unchanged).
    """

    PROPERTY: ClassVar[str] = ROTATION_MARKER
    OP: ClassVar[str] = "rotate"
    ROLE: ClassVar[str] = "journal"
    id: str
    started: str
    inherit: bool
    old_keyformat: str
    old_pbkdf2salt: str
    old_pbkdf2iters: str
    old_encryptionroot: str
    new_keyformat: str | None = None
    new_pbkdf2iters: str | None = None
    new_keylocation: str | None = None
    owner: Owner | None = None

    @classmethod
    def loads(cls, text: str) -> RotationJournal:
        """Parse a journal marker, current or legacy.

        Raises:
            InputError: not a journal this encroot can read (foreign, damaged or
                newer; the message gives the parser's reason).
        """
        parsed = parse_marker(ROTATION_MARKER, text)
        if not isinstance(parsed, RotationJournal):
            reason = parsed.reason if isinstance(parsed, NotOurs) else "another marker"
            raise InputError(f"{ROTATION_MARKER}: not a journal this encroot can read "
                             f"({reason})", subject=ROTATION_MARKER)
        return parsed

    @classmethod
    def from_payload(cls, data: dict[str, Any], owner: Owner | None) -> RotationJournal:
        inherit = data.get("inherit")
        if not isinstance(inherit, bool):
            raise _Bad("'inherit' must be true or false")
        journal_id = _text(data, "id")
        if not journal_id:
            raise _Bad("'id' is empty")
        return cls(id=journal_id, started=_text(data, "started"), inherit=inherit,
                   old_keyformat=_text(data, "old_keyformat"),
                   old_pbkdf2salt=_text(data, "old_pbkdf2salt"),
                   old_pbkdf2iters=_text(data, "old_pbkdf2iters"),
                   old_encryptionroot=_text(data, "old_encryptionroot"),
                   new_keyformat=_optional_text(data, "new_keyformat"),
                   new_pbkdf2iters=_optional_text(data, "new_pbkdf2iters"),
                   new_keylocation=_optional_text(data, "new_keylocation"), owner=owner)


def _operation(data: dict[str, Any]) -> str:
    operation = _text(data, "operation")
    if operation not in CONVERSIONS:
        raise _Bad(f"'operation' {operation!r} is not a conversion")
    return operation


@record(frozen=True, kw_only=True)
class ConvertPhase(_Payload):
    """On ``X.encroot-convert`` from its creation (``zfs receive -o``) while a phase runs."""

    PROPERTY: ClassVar[str] = CONVERT_MARKER
    OP: ClassVar[str] = "convert"
    ROLE: ClassVar[str] = "phase"
    target: str
    operation: str
    phase: str
    owner: Owner | None = None

    @classmethod
    def from_payload(cls, data: dict[str, Any], owner: Owner | None) -> ConvertPhase:
        phase = _text(data, "phase")
        if phase not in ("initial", "catch-up", "cutover"):
            raise _Bad(f"'phase' {phase!r} is not a phase")
        return cls(target=_dataset(data, "target"), operation=_operation(data), phase=phase,
                   owner=owner)


@record(frozen=True, kw_only=True)
class ConvertVerified(_Payload):
    """On ``X.encroot-convert`` (then on the new X) once cutover verified it: swap it in.

    ``snapshot`` is the final snapshot's short name; ``keep_old`` the ``--keep-old`` name.
    """

    PROPERTY: ClassVar[str] = CONVERT_MARKER
    OP: ClassVar[str] = "convert"
    ROLE: ClassVar[str] = "verified"
    target: str
    operation: str
    snapshot: str
    keep_old: str | None = None
    owner: Owner | None = None

    @classmethod
    def from_payload(cls, data: dict[str, Any], owner: Owner | None) -> ConvertVerified:
        keep = _optional_text(data, "keep_old")
        if keep is not None:
            keep = _dataset(data, "keep_old")
        return cls(target=_dataset(data, "target"), operation=_operation(data),
                   snapshot=_text(data, "snapshot"), keep_old=keep, owner=owner)


@record(frozen=True, kw_only=True)
class ConvertReplaced(_Payload):
    """On the old tree, right before it is renamed away from ``target``."""

    PROPERTY: ClassVar[str] = CONVERT_REPLACED
    OP: ClassVar[str] = "convert"
    ROLE: ClassVar[str] = "replaced"
    target: str
    operation: str
    owner: Owner | None = None

    @classmethod
    def from_payload(cls, data: dict[str, Any], owner: Owner | None) -> ConvertReplaced:
        return cls(target=_dataset(data, "target"), operation=_operation(data), owner=owner)


@record(frozen=True, kw_only=True)
class ConvertKept(_Payload):
    """On an old tree kept by ``--keep-old``: what it was, for doctor (``old-copy-kept``)."""

    PROPERTY: ClassVar[str] = CONVERT_REPLACED
    OP: ClassVar[str] = "convert"
    ROLE: ClassVar[str] = "kept"
    target: str
    operation: str
    owner: Owner | None = None

    @classmethod
    def from_payload(cls, data: dict[str, Any], owner: Owner | None) -> ConvertKept:
        return cls(target=_dataset(data, "target"), operation=_operation(data), owner=owner)


Marker = (ReceiveInProgress | ReceiveVerified | ReceiveReplaced | MigratePhase
          | MigrateCutover | RotationJournal | ConvertPhase | ConvertVerified
          | ConvertReplaced | ConvertKept)
_TYPES: tuple[type[Marker], ...] = (ReceiveInProgress, ReceiveVerified, ReceiveReplaced,
                                    MigratePhase, MigrateCutover, RotationJournal,
                                    ConvertPhase, ConvertVerified, ConvertReplaced,
                                    ConvertKept)
_BY_ROLE = {(t.PROPERTY, t.OP, t.ROLE): t for t in _TYPES}
_PROPERTIES = {t.PROPERTY for t in _TYPES}


def marker_types_table() -> str:
    """Every typed marker as a Markdown table (property, op, role, payload fields, what it
    means: the first line of its docstring); docs/design.md holds it verbatim, and a unit
    test keeps the two equal."""
    rows = ["| marker | property | op | role | data | meaning |",
            "| --- | --- | --- | --- | --- | --- |"]
    for kind in _TYPES:
        data = ", ".join(f"`{f.name}`" for f in fields(kind) if f.name != "owner")
        meaning = (kind.__doc__ or "").strip().splitlines()[0].replace("``", "`")
        rows.append(f"| `{kind.__name__}` | `{kind.PROPERTY}` | {kind.OP} | {kind.ROLE} | "
                    f"{data} | {meaning} |")
    return "\n".join(rows) + "\n"


def dumps(marker: Marker) -> str:
    """The marker as the value of its property (format 2, compact, keys sorted)."""
    document = {"format": FORMAT, "op": marker.OP, "role": marker.ROLE,
                "owner": None if marker.owner is None else marker.owner.to_json(),
                "data": marker.payload()}
    return json.dumps(document, separators=(",", ":"), sort_keys=True)


def _keys(data: dict[str, Any], cls: type[Marker]) -> None:
    allowed = {f.name for f in fields(cls)} - {"owner"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise _Bad(f"unknown field {unknown[0]!r}")


def parse_marker(prop: str, value: str | None) -> Marker | NotOurs:
    """The typed marker in ``prop``'s ``value``, or ``NotOurs`` saying why it is not one.

    Never raises for foreign content and never guesses (see the module's docstring).
    """
    if prop not in _PROPERTIES:
        return NotOurs(prop, "not a property encroot writes markers in")
    if value is None or value in ("", "-"):
        return NotOurs(prop, "not set")
    try:
        if prop in (RECV_VERIFIED, RECV_REPLACED) and not value.lstrip().startswith("{"):
            return _parse_legacy_text(prop, value)
        return _parse_json(prop, value)
    except _Bad as exc:
        return NotOurs(prop, f"{_shown(value)}: {exc}")


def _shown(value: str) -> str:
    return repr(value if len(value) <= 60 else value[:57] + "...")


def _parse_json(prop: str, value: str) -> Marker | NotOurs:
    try:
        document = json.loads(value)
    except ValueError:
        raise _Bad("not valid JSON (truncated?)") from None
    if not isinstance(document, dict):
        raise _Bad("not a JSON object")
    if "format" not in document:
        return _parse_legacy_json(prop, document)
    version = document["format"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise _Bad("'format' must be an integer")
    if version > FORMAT:
        return NotOurs(prop, f"written by a newer encroot (marker format {version}; this "
                             f"encroot reads format {FORMAT}); leaving it alone")
    if version != FORMAT or set(document) != {"format", "op", "role", "owner", "data"}:
        raise _Bad(f"not an encroot marker of format {FORMAT}")
    cls = _BY_ROLE.get((prop, document["op"], document["role"]))
    if cls is None:
        raise _Bad(f"op {document['op']!r} role {document['role']!r} does not belong "
                   f"in {prop}")
    try:
        owner = None if document["owner"] is None else Owner.from_json(document["owner"])
    except ValueError as exc:
        raise _Bad(str(exc)) from None
    data = document["data"]
    if not isinstance(data, dict):
        raise _Bad("'data' must be an object")
    _keys(data, cls)
    return cls.from_payload(data, owner)


_LEGACY_VERIFIED = re.compile(r"^([0-9]+)(?: keep-old=(.+))?$")
_LEGACY_MIGRATE_KEYS = {"source", "snapshot", "stage", "devices"}


def _parse_legacy_text(prop: str, value: str) -> Marker:
    if prop == RECV_VERIFIED:
        match = _LEGACY_VERIFIED.match(value)
        if match is None:
            raise _Bad("neither format-2 JSON nor the legacy 'GUID [keep-old=NAME]'")
        data = {"guid": match.group(1), "keep_old": match.group(2)}
        return ReceiveVerified.from_payload(data, None)
    return ReceiveReplaced.from_payload({"target": value}, None)


def _parse_legacy_json(prop: str, document: dict[str, Any]) -> Marker | NotOurs:
    if prop == MIGRATE_MARKER:
        keys = set(document)
        if not {"source", "snapshot"} <= keys <= _LEGACY_MIGRATE_KEYS:
            raise _Bad("neither format-2 JSON nor the legacy migrate marker")
        devices = document.get("devices", "")
        if not isinstance(devices, str):
            raise _Bad("'devices' must be a string in a legacy migrate marker")
        data = {"source": document.get("source"), "snapshot": document.get("snapshot"),
                "stage": document.get("stage", "reparent"), "devices": devices.split()}
        return MigrateCutover.from_payload(data, None)
    if prop == ROTATION_MARKER:
        version = document.get("version")
        if isinstance(version, int) and not isinstance(version, bool) and version > 1:
            return NotOurs(prop, f"written by a newer encroot (journal version {version})")
        if version != 1 or not isinstance(document.get("owner"), dict):
            raise _Bad("neither format-2 JSON nor a version-1 rotation journal")
        data = {k: v for k, v in document.items() if k not in ("version", "owner")}
        _keys(data, RotationJournal)
        return RotationJournal.from_payload(data, None)
    raise _Bad("JSON without a marker format")
