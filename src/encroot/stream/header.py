"""Read what a ``zfs send`` stream is from its first records, without ZFS and without consuming it.

A stream starts with a ``DRR_BEGIN`` record, 312 bytes (``dmu_replay_record_t``
in ``include/sys/zfs_ioctl.h``)::

    offset  size  field
         0     4  drr_type            0 = DRR_BEGIN
         4     4  drr_payloadlen      bytes of payload after the record
         8     8  drr_magic           0x2F5BACBAC in the sender's byte order
        16     8  drr_versioninfo     bits 0-1 header type (1 substream, 2 compound),
                                      bits 2-57 feature flags (RAW = 1 << 24)
        24     8  drr_creation_time
        32     4  drr_type            objset type (2 = ZFS, 3 = ZVOL)
        36     4  drr_flags           DRR_FLAG_CLONE = 1, ...
        40     8  drr_toguid
        48     8  drr_fromguid        0 for a full stream
        56   256  drr_toname          "pool/fs@snap", NUL-terminated

A replication package (``zfs send -R``) is a compound stream: its first
record's payload is an XDR-packed nvlist (``nvlist_pack(NV_ENCODE_XDR)``,
``lib/libzfs/libzfs_sendrecv.c``) with ``tosnap``, ``fromsnap`` (when
incremental), ``raw``, and ``fss``: one entry per dataset with its
``name``, ``snaps`` (name -> GUID), ``origin`` and ``is_encroot``.

In the kernel (``dmu_send.c``) a substream carries the RAW feature only when
its dataset is encrypted (``ASSERT(os->os_encrypted)``), so RAW on a
substream means "encrypted data, sent raw".

Reading the header off a descriptor without consuming the stream is
``peek``'s job.
"""

from __future__ import annotations

import struct
from typing import Any

from ..errors import StreamError
from ..records import record

__all__ = [
    "BEGIN_RECORD_SIZE",
    "StreamDataset",
    "StreamInfo",
    "decode_xdr_nvlist",
    "parse_header",
]

BEGIN_RECORD_SIZE = 312
DMU_BACKUP_MAGIC = 0x2F5BACBAC
DRR_BEGIN = 0
SUBSTREAM, COMPOUND = 1, 2
DRR_FLAG_CLONE = 1 << 0
# The nvlist in a replication package is bounded by zfs_max_nvlist_src_size
# (128 MiB by default); anything larger is not a stream ZFS would accept.
MAX_PAYLOAD = 128 << 20
MAX_NESTING = 32

FEATURES = {
    1 << 0: "dedup", 1 << 1: "dedupprops", 1 << 2: "sa_spill", 1 << 16: "embed_data",
    1 << 17: "lz4", 1 << 19: "large_blocks", 1 << 20: "resuming", 1 << 21: "redacted",
    1 << 22: "compressed", 1 << 23: "large_dnode", 1 << 24: "raw", 1 << 25: "zstd",
    1 << 26: "holds", 1 << 27: "switch_to_large_blocks", 1 << 28: "longname",
    1 << 29: "large_microzap",
}
FEATURE_RAW = 1 << 24
FEATURE_RESUMING = 1 << 20
OBJSET_TYPES = {2: "filesystem", 3: "volume"}


@record(frozen=True)
class StreamSnapshot:
    name: str
    guid: int


@record(frozen=True)
class StreamDataset:
    """One dataset a stream brings, with the snapshots it lists for it."""

    name: str
    guid: int
    snapshots: tuple[StreamSnapshot, ...]
    is_encroot: bool = False
    origin_guid: int | None = None

    def relative_to(self, top: str) -> str:
        """The dataset's name below the stream's top dataset ("" for the top)."""
        return "" if self.name == top else self.name[len(top) + 1:]


@record(frozen=True)
class StreamInfo:
    """What a stream's header says.

    ``package`` is True for a replication (``-R``) package; ``full`` is False
    for incremental streams; ``raw`` is True for raw sends (for a substream:
    encrypted data sent raw).
    """

    package: bool
    full: bool
    raw: bool
    resuming: bool
    toname: str
    toguid: int
    fromguid: int
    objset_type: str
    clone: bool
    features: tuple[str, ...]
    byte_order: str
    header_bytes: int
    tosnap: str | None = None
    fromsnap: str | None = None
    datasets: tuple[StreamDataset, ...] = ()

    @property
    def top(self) -> str:
        """The sender's name of the stream's top dataset (without ``@snap``)."""
        return self.toname.split("@", 1)[0]

    @property
    def encrypted(self) -> bool:
        """True when the stream carries encrypted data sent raw (the top dataset's)."""
        if not self.package:
            return self.raw
        return self.raw and any(d.is_encroot for d in self.datasets)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "replication package" if self.package else "single stream",
            "full": self.full,
            "incremental": not self.full,
            "raw": self.raw,
            "resuming": self.resuming,
            "toname": self.toname,
            "toguid": self.toguid,
            "fromguid": self.fromguid,
            "tosnap": self.tosnap,
            "fromsnap": self.fromsnap,
            "type": self.objset_type,
            "clone": self.clone,
            "features": list(self.features),
            "byte_order": self.byte_order,
            "header_bytes": self.header_bytes,
            "datasets": [
                {"name": d.name, "guid": d.guid, "is_encroot": d.is_encroot,
                 "origin_guid": d.origin_guid,
                 "snapshots": [{"name": s.name, "guid": s.guid} for s in d.snapshots]}
                for d in self.datasets
            ],
        }


class _NeedMore(Exception):
    """parse_header needs the first ``size`` bytes of the stream to decide."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


# -- XDR nvlists -------------------------------------------------------------------

_BOOLEAN, _BYTE, _INT16, _UINT16, _INT32, _UINT32, _INT64, _UINT64, _STRING = range(1, 10)
_BYTE_ARRAY, _INT16_ARRAY, _UINT16_ARRAY, _INT32_ARRAY, _UINT32_ARRAY = range(10, 15)
_INT64_ARRAY, _UINT64_ARRAY, _STRING_ARRAY, _HRTIME, _NVLIST, _NVLIST_ARRAY = range(15, 21)
_BOOLEAN_VALUE, _INT8, _UINT8, _BOOLEAN_ARRAY, _INT8_ARRAY, _UINT8_ARRAY = range(21, 27)
_SCALAR4 = {_BYTE: ">i", _INT16: ">i", _UINT16: ">I", _INT32: ">i", _UINT32: ">I",
            _INT8: ">i", _UINT8: ">I"}
_SCALAR8 = {_INT64: ">q", _UINT64: ">Q", _HRTIME: ">q"}
_ARRAY4 = {_INT16_ARRAY: ">i", _UINT16_ARRAY: ">I", _INT32_ARRAY: ">i",
           _UINT32_ARRAY: ">I", _BOOLEAN_ARRAY: ">i", _INT8_ARRAY: ">i", _UINT8_ARRAY: ">I"}
_ARRAY8 = {_INT64_ARRAY: ">q", _UINT64_ARRAY: ">Q"}


class _Xdr:
    """A bounds-checked big-endian reader; every overrun is a StreamError."""

    def __init__(self, data: bytes, offset: int = 0) -> None:
        self.data, self.pos = data, offset

    def take(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise StreamError("replication header nvlist is truncated or corrupt")
        chunk = self.data[self.pos:self.pos + size]
        self.pos += size
        return chunk

    def unpack(self, fmt: str) -> int:
        value: int = struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]
        return value

    def string(self) -> str:
        size = self.unpack(">I")
        raw = self.take(size)
        self.take((4 - size % 4) % 4)
        return raw.decode("utf-8", errors="replace")

    def count(self, element_size: int) -> int:
        """An array length that the remaining bytes can actually hold."""
        size = self.unpack(">I")
        if size * element_size > len(self.data) - self.pos:
            raise StreamError("replication header nvlist is truncated or corrupt")
        return size


def decode_xdr_nvlist(data: bytes) -> dict[str, Any]:
    """Decode a packed XDR nvlist (with its 4-byte nvs header) into a dict.

    Raises:
        StreamError: not XDR-encoded, truncated, or inconsistent.
    """
    if len(data) < 4 or data[0] != 1:
        raise StreamError("replication header is not an XDR-encoded nvlist")
    return _decode_nvlist(_Xdr(data, 4), depth=0)


def _decode_nvlist(xdr: _Xdr, depth: int) -> dict[str, Any]:
    if depth > MAX_NESTING:
        raise StreamError("replication header nvlist is nested too deeply")
    xdr.unpack(">i")  # nvl_version
    xdr.unpack(">I")  # nvl_nvflag
    result: dict[str, Any] = {}
    while True:
        start = xdr.pos
        encode_len = xdr.unpack(">i")
        decode_len = xdr.unpack(">i")
        if encode_len == 0 and decode_len == 0:
            return result
        if encode_len < 20:
            raise StreamError("replication header nvlist has a malformed pair")
        name = xdr.string()
        kind = xdr.unpack(">i")
        nelem = xdr.unpack(">i")
        result[name] = _decode_value(xdr, kind, nelem, depth)
        if kind not in (_NVLIST, _NVLIST_ARRAY):
            xdr.pos = start + encode_len  # trust the pair's own size to stay in step
            if xdr.pos > len(xdr.data):
                raise StreamError("replication header nvlist is truncated or corrupt")


def _decode_value(xdr: _Xdr, kind: int, nelem: int, depth: int) -> Any:
    if kind == _BOOLEAN:
        return True
    if kind == _BOOLEAN_VALUE:
        return xdr.unpack(">i") != 0
    if kind in _SCALAR4:
        return xdr.unpack(_SCALAR4[kind])
    if kind in _SCALAR8:
        return xdr.unpack(_SCALAR8[kind])
    if kind == _STRING:
        return xdr.string()
    if kind == _NVLIST:
        return _decode_nvlist(xdr, depth + 1)
    if kind == _NVLIST_ARRAY:
        if nelem < 0 or nelem * 16 > len(xdr.data) - xdr.pos:
            raise StreamError("replication header nvlist is truncated or corrupt")
        return [_decode_nvlist(xdr, depth + 1) for _ in range(nelem)]
    if kind in _ARRAY4:
        return [xdr.unpack(_ARRAY4[kind]) for _ in range(xdr.count(4))]
    if kind in _ARRAY8:
        return [xdr.unpack(_ARRAY8[kind]) for _ in range(xdr.count(8))]
    if kind == _STRING_ARRAY:
        return [xdr.string() for _ in range(xdr.count(4))]
    if kind == _BYTE_ARRAY:
        if nelem < 0:
            raise StreamError("replication header nvlist has a malformed pair")
        return xdr.take(nelem)
    return None  # a type we do not need (e.g. double); skipped by its encoded size


# -- the begin record -----------------------------------------------------------------


@record(frozen=True)
class _Begin:
    payload_len: int
    versioninfo: int
    objset_type: int
    flags: int
    toguid: int
    fromguid: int
    toname: str
    byte_order: str


def _parse_begin(record: bytes) -> _Begin:
    little = struct.unpack_from("<Q", record, 8)[0]
    big = struct.unpack_from(">Q", record, 8)[0]
    if little == DMU_BACKUP_MAGIC:
        order, prefix = "little-endian", "<"
    elif big == DMU_BACKUP_MAGIC:
        order, prefix = "big-endian", ">"
    else:
        raise StreamError("not a zfs send stream: the first record has no DRR_BEGIN magic "
                          "(0x2F5BACBAC)")
    drr_type, payload_len, _, versioninfo, _, objset_type, flags, toguid, fromguid = (
        struct.unpack_from(prefix + "IIQQQIIQQ", record, 0))
    if drr_type != DRR_BEGIN:
        raise StreamError(f"not a zfs send stream: first record type {drr_type}, "
                          "expected DRR_BEGIN (0)")
    raw_name = record[56:BEGIN_RECORD_SIZE]
    if b"\0" not in raw_name:
        raise StreamError("corrupt stream: the begin record's name is not terminated")
    toname = raw_name.split(b"\0", 1)[0].decode("utf-8", errors="replace")
    return _Begin(payload_len, versioninfo, objset_type, flags, toguid, fromguid, toname, order)


def _feature_names(features: int) -> tuple[str, ...]:
    names = [name for bit, name in FEATURES.items() if features & bit]
    unknown = features & ~sum(FEATURES)
    if unknown:
        names.append(f"unknown:{unknown:#x}")
    return tuple(names)


def parse_header(data: bytes, *, complete: bool = True) -> StreamInfo:
    """Parse the header at the start of ``data``.

    With ``complete`` False, ``data`` may be a prefix of a longer stream and
    the internal ``_NeedMore`` says how many bytes are needed; with it True,
    ``data`` is all there is and a short header is a StreamError.

    Raises:
        StreamError: not a send stream, truncated, or corrupt.
    """
    if len(data) < BEGIN_RECORD_SIZE:
        if not complete:
            raise _NeedMore(BEGIN_RECORD_SIZE)
        raise StreamError(f"stream is truncated: {len(data)} bytes, a begin record alone is "
                          f"{BEGIN_RECORD_SIZE}" if data else "stream is empty")
    begin = _parse_begin(data[:BEGIN_RECORD_SIZE])
    header_type = begin.versioninfo & 0x3
    features = (begin.versioninfo >> 2) & ((1 << 56) - 1)
    common = {
        "raw": bool(features & FEATURE_RAW),
        "resuming": bool(features & FEATURE_RESUMING),
        "toname": begin.toname,
        "toguid": begin.toguid,
        "fromguid": begin.fromguid,
        "objset_type": OBJSET_TYPES.get(begin.objset_type, f"type {begin.objset_type}"),
        "clone": bool(begin.flags & DRR_FLAG_CLONE),
        "features": _feature_names(features),
        "byte_order": begin.byte_order,
    }
    if header_type == SUBSTREAM:
        return StreamInfo(package=False, full=begin.fromguid == 0,
                          header_bytes=BEGIN_RECORD_SIZE,
                          tosnap=begin.toname.split("@", 1)[1] if "@" in begin.toname else None,
                          **common)  # type: ignore[arg-type]
    if header_type != COMPOUND:
        raise StreamError(f"corrupt stream: unknown header type {header_type} "
                          "(1 substream, 2 replication package)")
    if begin.payload_len > MAX_PAYLOAD:
        raise StreamError(f"corrupt stream: replication header of {begin.payload_len} bytes "
                          f"exceeds {MAX_PAYLOAD}")
    end = BEGIN_RECORD_SIZE + begin.payload_len
    if len(data) < end:
        if not complete:
            raise _NeedMore(end)
        raise StreamError(f"stream is truncated inside its replication header "
                          f"({len(data)} of {end} bytes)")
    nvlist = decode_xdr_nvlist(bytes(data[BEGIN_RECORD_SIZE:end]))
    fromsnap = _text(nvlist.get("fromsnap"))
    common["raw"] = bool(common["raw"]) or nvlist.get("raw") is True
    return StreamInfo(package=True, full=fromsnap is None, header_bytes=end,
                      tosnap=_text(nvlist.get("tosnap")), fromsnap=fromsnap,
                      datasets=_datasets(nvlist.get("fss")),
                      **common)  # type: ignore[arg-type]


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _datasets(fss: object) -> tuple[StreamDataset, ...]:
    if not isinstance(fss, dict):
        raise StreamError("corrupt replication header: no 'fss' list of datasets")
    datasets = []
    for key, entry in fss.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise StreamError(f"corrupt replication header: dataset entry {key!r} has no name")
        snaps = entry.get("snaps", {})
        snapshots = tuple(sorted(
            (StreamSnapshot(name, guid) for name, guid in snaps.items() if isinstance(guid, int)),
            key=lambda s: s.name)) if isinstance(snaps, dict) else ()
        guid = int(key, 16) if key.startswith("0x") and _is_hex(key[2:]) else 0
        origin = entry.get("origin")
        datasets.append(StreamDataset(entry["name"], guid, snapshots,
                                      is_encroot=entry.get("is_encroot") is True,
                                      origin_guid=origin if isinstance(origin, int) else None))
    return tuple(sorted(datasets, key=lambda d: (d.name.count("/"), d.name)))


def _is_hex(text: str) -> bool:
    return bool(text) and all(c in "0123456789abcdefABCDEF" for c in text)


