"""Reading what a conversion plans from: a constant number of bulk reads.

``read_state`` takes one ``zpool get``, one ``zfs get -d 1`` of X's parent
(which also shows X, ``X.encroot-convert`` and ``X.encroot-convert-old``),
one recursive ``zfs get`` of each tree that exists (datasets, snapshots,
bookmarks), one ``zfs get -s local,received all`` of the old tree (and of a
tree moved aside by a swap), and one ``zfs holds`` for every snapshot that
has user holds.  Whatever the number of datasets and snapshots.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import DatasetNotFound
from ..names import DatasetName
from ..owned import CONVERT_MARKER, CONVERT_REPLACED, ConvertVerified
from ..zfs import Zfs
from ..zfs.parse import PropertyTable
from .model import ConvertRequest, ConvertState, Node, Snap, Tree

__all__ = ["STATE_PROPERTIES", "read_state", "read_tree"]

STATE_PROPERTIES = (
    "type", "guid", "createtxg", "origin", "encryption", "encryptionroot", "keyformat",
    "keylocation", "keystatus", "mounted", "mountpoint", "canmount", "userrefs", "clones",
    "receive_resume_token", "written", "referenced", "refreservation", "available",
    CONVERT_MARKER, CONVERT_REPLACED,
)
_MARKERS = (CONVERT_MARKER, CONVERT_REPLACED)


def _int(text: str) -> int:
    return int(text) if text.isdigit() else 0


def _table(zfs: Zfs, names: list[str], properties: tuple[str, ...], **options: object
           ) -> PropertyTable:
    try:
        return zfs.get(names, properties, use_json=False, **options)  # type: ignore[arg-type]
    except DatasetNotFound:
        return PropertyTable()


def read_tree(zfs: Zfs, root: str, *, local: bool = False) -> Tree:
    """Every filesystem, volume, snapshot and bookmark under ``root`` in one ``zfs get``
    (and with ``local`` its locally set or received properties in a second one)."""
    table = _table(zfs, [root], STATE_PROPERTIES, recursive=True,
                   types=("filesystem", "volume", "snapshot", "bookmark"))
    local_table = _table(zfs, [root], ("all",), recursive=True,
                         types=("filesystem", "volume"), sources=("local", "received")) \
        if local and root in table else PropertyTable()
    snaps: dict[str, list[Snap]] = {}
    marks: dict[str, list[str]] = {}
    for name, props in table.datasets.items():
        if "@" in name:
            dataset, short = name.split("@", 1)
            clones = props.get("clones")
            snaps.setdefault(dataset, []).append(Snap(
                short, props["guid"].value if "guid" in props else "",
                _int(props["createtxg"].value if "createtxg" in props else ""),
                _int(props["userrefs"].value if "userrefs" in props else ""),
                tuple(c for c in (clones.value if clones else "").split(",") if c
                      and c != "-")))
        elif "#" in name:
            dataset, short = name.split("#", 1)
            marks.setdefault(dataset, []).append(short)
    nodes = {}
    for name, props in table.datasets.items():
        if "@" in name or "#" in name:
            continue
        local_values = {p: v.value for p, v in local_table.datasets.get(name, {}).items()}
        nodes[name] = Node(
            name, {p: v.value for p, v in props.items()}, local_values,
            tuple(sorted(snaps.get(name, []), key=lambda s: s.txg)),
            tuple(sorted(marks.get(name, []))),
            {p: props[p].source for p in _MARKERS if p in props})
    return Tree(root, nodes)


def _family(zfs: Zfs, target: DatasetName) -> Mapping[str, Mapping[str, str]]:
    if target.parent is None:
        return {}
    table = _table(zfs, [target.parent], ("type", "encryption", "encryptionroot",
                                          "keystatus", "available"),
                   depth=1, types=("filesystem", "volume"))
    return {name: {p: v.value for p, v in props.items()} for name, props in
            table.datasets.items()}


def read_state(zfs: Zfs, request: ConvertRequest) -> ConvertState:
    """The old tree, the new one, a tree moved aside by a swap, the parent and the pool."""
    target = request.dataset
    feature = zfs.pool_get(target.pool, ["feature@encryption"]).get("feature@encryption", "-")
    family = _family(zfs, target)
    old = read_tree(zfs, target, local=True) if target in family else Tree(str(target))
    new = read_tree(zfs, request.temp) if request.temp in family else Tree(request.temp)
    aside_name = _aside_name(request, family, new, old)
    aside = read_tree(zfs, aside_name, local=True) if aside_name else Tree("")
    held = [f"{node.name}@{snap.name}" for tree in (old, new, aside)
            for node in tree.nodes.values() for snap in node.snapshots if snap.userrefs]
    holds = {snap: tuple(tags) for snap, tags in zfs.holds(held).items()} if held else {}
    keep_exists = request.keep_old is not None and (
        request.keep_old in family or (aside_name != request.keep_old
                                       and zfs.exists(request.keep_old)))
    return ConvertState(old, new, aside, family.get(target.parent or "", {}), feature, holds,
                        keep_old_exists=keep_exists)


def _aside_name(request: ConvertRequest, family: Mapping[str, Mapping[str, str]],
                new: Tree, old: Tree) -> str:
    """Where an interrupted swap may have put the old tree: ``X.encroot-convert-old``, or
    the ``--keep-old`` name the verified marker records."""
    default = request.dataset + ".encroot-convert-old"
    if default in family:
        return default
    for tree in (new, old):
        top = tree.top
        marker = None if top is None else top.marker(CONVERT_MARKER)
        if isinstance(marker, ConvertVerified) and marker.keep_old:
            return marker.keep_old
    return ""
