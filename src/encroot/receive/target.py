"""Which file system a stream lands in: the names ``zfs receive`` derives (pure).

``zfs receive`` takes ``FILESYSTEM``, ``FILESYSTEM@SNAPSHOT`` (the received
snapshot is named SNAPSHOT), or with ``-d``/``-e`` an existing file system
*below* which the stream's own name decides where it lands.  The rule is
``zfs_receive_one()`` in ``lib/libzfs/libzfs_sendrecv.c`` (OpenZFS 2.1 to
2.4, unchanged): with ``sendfs`` the top file system named in the stream's
first begin record (``drr_toname`` up to the ``@``; for a ``-R`` package
that of the package's own begin record, so every dataset of the package
lands below the same top),

- ``-d``: the destination, then ``drr_toname`` from its first ``/`` (all but
  the pool name); ``pool@s`` lands in the destination itself;
- ``-e``: the destination, then the last element of ``sendfs``
  (``pool/a/b`` lands in ``DEST/b``; a pool's root ``pool`` in ``DEST/pool``).

Each dataset of a package then lands at the top's name plus its own name
below ``sendfs``, which is what receiving it into that top without ``-d``/``-e``
does too; so encroot derives the top once and receives as usual.
"""

from __future__ import annotations

from ..errors import InputError
from ..names import DatasetName

__all__ = ["NAME_FROM_STREAM", "derived_target", "split_target"]

# The zfs receive flags that take the target's name from the stream.
NAME_FROM_STREAM = ("-d", "-e")


def derived_target(destination: str, toname: str, flag: str) -> DatasetName:
    """The file system the stream's top lands in for ``zfs receive FLAG DESTINATION``.

    ``toname`` is the stream's (or package's) ``drr_toname``, ``pool/fs@snap``;
    ``flag`` is ``-d``, ``-e`` or "" (the destination is the target).

    Raises:
        InputError: an unknown flag, or the derived name is not a valid
            dataset name (too long, for one); zfs refuses it the same way.
    """
    sendfs = toname.split("@", 1)[0]
    if flag == "":
        tail = ""
    elif flag == "-d":
        slash = sendfs.find("/")
        tail = "" if slash < 0 else sendfs[slash:]
    elif flag == "-e":
        slash = sendfs.rfind("/")
        tail = "/" + sendfs if slash < 0 else sendfs[slash:]
    else:
        raise InputError(f"receive flag {flag!r}: the name comes from the stream only with "
                         "-d or -e", subject=flag)
    try:
        return DatasetName(destination + tail)
    except InputError as exc:
        raise InputError(f"{flag} {destination}: the stream's {toname!r} would land in "
                         f"{destination + tail!r}, which is not a valid name ({exc})",
                         subject=destination) from exc


def split_target(text: str, flag: str = "") -> tuple[DatasetName, str | None]:
    """``FILESYSTEM`` or ``FILESYSTEM@SNAPSHOT`` -> (file system, snapshot name or None).

    Raises:
        InputError: an invalid name, or a snapshot with ``-d``/``-e`` (zfs:
            "invalid argument - snapshot not allowed with -d").
    """
    if "@" not in text:
        return DatasetName(text), None
    if flag:
        raise InputError(f"target {text!r}: invalid argument - snapshot not allowed with "
                         f"{flag}", subject=text)
    from ..names import SnapshotName

    snapshot = SnapshotName(text)
    dataset, name = snapshot.split("@")
    return DatasetName(dataset), name
