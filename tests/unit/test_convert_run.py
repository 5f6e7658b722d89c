"""The conversion executor against a fake ZFS that applies what it is told (decisions only:
the lab's real-ZFS tests are the proof that ZFS does this): phase order, the key only in
the pipe, cutover's unmount before the snapshot, the swap, holds, mounts, --recover."""

from __future__ import annotations

import itertools
import json
import os
import re
import time
from dataclasses import dataclass, field, replace

import pytest

from encroot.convert import ConvertRequest, convert, plan_conversion, recover
from encroot.errors import ConvertRefused
from encroot.keys import Key
from encroot.names import DatasetName
from encroot.zfs import Command, Runner, Zfs
from encroot.zfs.testing import FaultInjector, Killed, RecordingRunner

from .fakes import BINARIES, FakeDatasets

HEX = "ab" * 32
TOP = DatasetName("tank/my data")
_guids = itertools.count(1000)


def fs(**extra: str) -> dict[str, str]:
    return {"type": "filesystem", "encryption": "off", "encryptionroot": "-",
            "keystatus": "-", "mounted": "yes", "canmount": "on", "createtxg": "1",
            "mountpoint": "/somewhere", **extra}


def lua_value(literal: str) -> str | None:
    """A literal as ``encroot.zfs.lua.lua_string`` writes it, read back; ``nil`` is None."""
    if literal == "nil":
        return None
    body = re.sub(r"\\(\d{3})", lambda m: chr(int(m.group(1))), literal[1:-1])
    return body.encode("latin-1").decode()


@dataclass
class FakeZfs(FakeDatasets):
    """FakeDatasets plus snapshots, sends and receives, mounts and holds."""

    holds: dict[str, list[str]] = field(default_factory=dict)
    keys_seen: list[bytes] = field(default_factory=list)
    sender: tuple[str, ...] = ()
    txg: itertools.count = field(default_factory=lambda: itertools.count(10))  # type: ignore[type-arg]
    runner: RecordingRunner | None = None  # set by zfs_for: the claim program's script
    tokens: dict[str, str] = field(default_factory=dict)  # resume token -> its snapshot
    replicated_dry_runs: list[tuple[str, ...]] = field(default_factory=list)  # send -nP -R

    def __call__(self, command: Command) -> tuple[int, str, str]:
        argv = command.argv[1:]
        verb = argv[0]
        if verb == "send":
            if "-n" in argv:
                return 0, self._dry_run(argv), ""
            self.sender = argv
            return 0, "", ""
        if verb == "holds":
            return 0, "".join(f"{s}\t{t}\tdate\n" for s in argv[2:]
                              for t in self.holds.get(s, [])), ""
        if not command.mutates:
            return super().__call__(command)
        self.changes.append(argv)
        if verb == "program":  # owned.claim_marker; its Lua is tested in test_owned_claim
            return self._claim()
        if verb == "snapshot":
            self._snapshot(argv[-1])
        elif verb == "receive":
            self._receive(command, argv)
        elif verb in ("mount", "unmount"):
            self.datasets[argv[-1]]["mounted"] = "yes" if verb == "mount" else "no"
        elif verb in ("hold", "release"):
            tags = self.holds.setdefault(argv[-1], [])
            tags.append(argv[1]) if verb == "hold" else tags.remove(argv[1])
            self.datasets[argv[-1]]["userrefs"] = str(len(tags))
        elif verb == "set":
            for pair in argv[1:-1]:
                prop, _, value = pair.partition("=")
                self.datasets[argv[-1]][prop] = value
                self.local.setdefault(argv[-1], set()).add(prop)
        elif verb == "rename":  # ZFS renames the encryption root its children name, too
            source, target = argv[-2], argv[-1]
            for props in self.datasets.values():
                root = props.get("encryptionroot", "-")
                if root == source or root.startswith(source + "/"):
                    props["encryptionroot"] = target + root[len(source):]
            for snap in [s for s in self.holds if s.startswith(source + "@")]:
                self.holds[target + snap[len(source):]] = self.holds.pop(snap)
            self._apply(argv)
        else:
            self._apply(argv)
        return 0, "", ""

    def _dry_run(self, argv: tuple[str, ...]) -> str:
        """``zfs send -nP``: 1000 bytes a stream; with ``-R`` a row for each snapshot of
        each dataset of the tree up to the one named, as libzfs prints them; with
        ``-R -I ROOT@BASE`` only the rows after BASE of the datasets that have it."""
        if "-R" not in argv:
            return "size\t1000\n"
        self.replicated_dry_runs.append(argv)
        top, goal = argv[-1].split("@")
        start = argv[argv.index("-I") + 1].split("@")[1] if "-I" in argv else None
        rows = []
        for name in sorted(n for n in self.datasets if "@" not in n
                           and (n == top or n.startswith(top + "/"))):
            snaps = sorted((n for n in self.datasets if n.startswith(name + "@")),
                           key=lambda n: int(self.datasets[n]["createtxg"]))
            base = start if f"{name}@{start}" in snaps else None
            for snap in snaps[snaps.index(f"{name}@{base}") + 1 if base else 0:]:
                rows.append(f"full\t{snap}\t1000" if base is None
                            else f"incremental\t{base}\t{snap}\t1000")
                base = snap.split("@")[1]
                if base == goal:
                    break
        return "".join(row + "\n" for row in rows) + f"size\t{1000 * len(rows)}\n"

    def _claim(self) -> tuple[int, str, str]:
        """The compare-and-set of the claim program the runner was just handed."""
        assert self.runner is not None
        script = (self.runner.calls[-1][1] or b"").decode()
        literals = [lua_value(text) for text in re.findall(
            r'(nil|"(?:[^"\\]|\\\d{3})*")', script.split("\n", 1)[1].split("local current", 1)[0])]
        dataset, prop, expected, value = literals[:4]
        assert dataset is not None and prop is not None and value is not None
        current = (self.datasets[dataset].get(prop)
                   if prop in self.local.get(dataset, set()) else None)
        if current != expected:
            return 0, json.dumps({"return": {"claimed": False, "current": current}}), ""
        self.changes.append(("set", f"{prop}={value}", dataset))
        self.datasets[dataset][prop] = value
        self.local.setdefault(dataset, set()).add(prop)
        return 0, '{"return": {"claimed": true}}', ""

    def _snapshot(self, name: str) -> None:
        top, short = name.split("@")
        for found in [n for n in self.datasets if "@" not in n and
                      (n == top or n.startswith(top + "/"))]:
            self.datasets[f"{found}@{short}"] = {"type": "snapshot", "guid": str(next(_guids)),
                                                 "createtxg": str(next(self.txg))}

    def _receive(self, command: Command, argv: tuple[str, ...]) -> None:
        target = argv[-1]
        if command.key_fd is not None:
            self.keys_seen.append(os.read(command.key_fd, 100))
        options = dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "-o")
        if "-t" in self.sender:  # a resumed full stream: the rest of the token's snapshot
            self.sender = ("send", self.tokens[self.sender[self.sender.index("-t") + 1]])
            self.datasets[target].pop("receive_resume_token", None)
        snap = self.sender[-1]
        source = snap.split("@")[0]
        flag = next((f for f in ("-I", "-i") if f in self.sender), None)
        base = self.sender[self.sender.index(flag) + 1] if flag else None
        low = int(self.datasets[base]["createtxg"]) if base and base.startswith(source) else 0
        high = int(self.datasets[snap]["createtxg"])
        if target not in self.datasets:
            parent = self.datasets[target.rsplit("/", 1)[0]]
            props = {"type": "filesystem", "mounted": "no", "canmount": "on",
                     "createtxg": str(next(self.txg)), "mountpoint": "/" + target}
            if options.get("encryption", "off") != "off":
                props.update(encryption="aes-256-gcm", encryptionroot=target,
                             keystatus="available", keyformat=options["keyformat"],
                             keylocation=options["keylocation"])
            elif "encryption" not in options and parent.get("encryption", "off") != "off":
                props.update(encryption=parent["encryption"],
                             encryptionroot=parent["encryptionroot"], keystatus="available")
            else:
                props.update(encryption="off", encryptionroot="-", keystatus="-")
            self.datasets[target] = props
            self.local[target] = set()
            for prop, value in options.items():
                if prop not in ("keyformat", "keylocation", "encryption", "origin"):
                    props[prop] = value
                    self.local[target].add(prop)
        for name, props in list(self.datasets.items()):
            if name.startswith(source + "@") and low < int(props["createtxg"]) <= high:
                copy = {k: v for k, v in props.items() if k != "userrefs"}  # holds stay
                self.datasets[target + name[len(source):]] = copy


def tree() -> FakeZfs:
    fake = FakeZfs({
        "tank": fs(available=str(1 << 30)),
        TOP: fs(**{"com.x:tag": "a b"}),
        f"{TOP}@s1": {"type": "snapshot", "guid": "11", "createtxg": "2", "userrefs": "1"},
        f"{TOP}/c": fs(mountpoint="/srv/c"),
        f"{TOP}/c@s1": {"type": "snapshot", "guid": "12", "createtxg": "2"},
    }, local={TOP: {"com.x:tag"}, f"{TOP}/c": {"mountpoint"}})
    fake.holds[f"{TOP}@s1"] = ["keep"]
    return fake


def zfs_for(fake: FakeZfs, kill_before: int | None = None) -> tuple[Zfs, RecordingRunner]:
    runner = RecordingRunner(fake)
    fake.runner = runner
    inner: Runner = runner
    if kill_before is not None:
        inner = FaultInjector(runner, kill_before=kill_before)
    return Zfs(runner=inner, binaries=BINARIES), runner


def verbs(fake: FakeZfs) -> list[str]:
    return [" ".join(change[:1]) for change in fake.changes]


def test_all_phases_convert_swap_and_clean_up() -> None:
    fake = tree()
    zfs, runner = zfs_for(fake)
    request = ConvertRequest("encrypt", TOP, keyformat="hex")
    with Key.hex(HEX) as key:
        result = convert(zfs, request, key=key)
    assert fake.keys_seen == [HEX.encode()]
    assert all(HEX not in " ".join(command.argv) for command, _ in runner.calls)
    assert fake.datasets[TOP]["encryptionroot"] == TOP
    assert fake.datasets[f"{TOP}/c"]["encryptionroot"] == TOP
    assert fake.datasets[f"{TOP}/c"]["mountpoint"] == "/srv/c"
    assert fake.datasets[TOP]["com.x:tag"] == "a b"
    assert fake.datasets[TOP]["keylocation"] == "prompt"
    assert fake.datasets[TOP]["mounted"] == "yes" and fake.datasets[f"{TOP}/c"]["mounted"] \
        == "yes"
    assert fake.holds[f"{TOP}@s1"] == ["keep"]
    assert not [n for n in fake.datasets if ".encroot-convert" in n]
    assert "encroot:convert" not in fake.datasets[TOP]
    cutover = fake.changes[[c[0] for c in fake.changes].index("unmount"):]
    order = [c[0] for c in cutover]
    assert order.index("unmount") < order.index("snapshot") < order.index("receive") < \
        order.index("rename") < order.index("mount") < order.index("destroy")
    assert result.phases[-1].downtime is not None
    assert "zpool trim --secure tank" in result.hygiene[0]


def test_downtime_runs_from_the_first_unmount_to_the_new_trees_mount() -> None:
    fake = tree()
    zfs, runner = zfs_for(fake)
    request = ConvertRequest("encrypt", TOP, keyformat="hex")
    with Key.hex(HEX) as key:
        convert(zfs, replace(request, phase="initial"), key=key)
    answer = runner.respond

    def slow(command: Command) -> tuple[int, str, str]:
        if command.argv[1] in ("snapshot", "destroy"):
            time.sleep(0.3)  # one inside the downtime, one after it
        return answer(command)

    runner.respond = slow
    started = time.monotonic()
    result = convert(zfs, replace(request, phase="cutover"), key=None)
    elapsed = time.monotonic() - started
    downtime = result.phases[-1].downtime
    assert downtime is not None and 0.3 <= downtime <= elapsed - 0.3


def test_the_dry_run_changes_nothing_and_estimates() -> None:
    fake = tree()
    zfs, _ = zfs_for(fake)
    plans = plan_conversion(zfs, ConvertRequest("encrypt", TOP), key_given=True)
    assert not fake.changes
    assert [p.phase for p in plans] == ["initial"]
    # full of @s1 (1000 each); the goal stands in as what was written since (0 here)
    assert plans[0].estimated_bytes == 2000 and not plans[0].refusals


def test_a_catch_up_estimates_only_the_snapshots_since_the_last_goal() -> None:
    fake = tree()
    zfs, _ = zfs_for(fake)
    with Key.hex(HEX) as key:
        convert(zfs, ConvertRequest("encrypt", TOP, keyformat="hex", phase="initial"), key=key)
    initial_goal = next(n for n in fake.datasets if n.startswith(f"{TOP}@encroot-convert"))
    fake.replicated_dry_runs.clear()
    zfs, runner = zfs_for(fake)
    result = convert(zfs, ConvertRequest("encrypt", TOP, phase="catch-up"), key=None)
    dry_run = fake.replicated_dry_runs[0]
    assert dry_run[dry_run.index("-I") + 1] == initial_goal
    # one row of 1000 bytes per dataset, from the rows: no dry run of each transfer
    assert result.phases[-1].plan.estimated_bytes == 2000
    assert len([c for c, _ in runner.calls if c.argv[1] == "send" and "-n" in c.argv]) == 1


def test_a_kill_after_the_verified_mark_is_finished_by_recover() -> None:
    fake = tree()
    request = ConvertRequest("encrypt", TOP, keyformat="hex")
    zfs, _ = zfs_for(fake)
    with Key.hex(HEX) as key:
        convert(zfs, ConvertRequest("encrypt", TOP, keyformat="hex", phase="initial"), key=key)
    count = len(fake.changes)
    zfs, _ = zfs_for(fake)
    convert(zfs, ConvertRequest("encrypt", TOP, phase="catch-up"), key=None)
    per_cutover = len(fake.changes) - count  # a catch-up's changes: take-over, snapshot, ...
    killed_zfs, _ = zfs_for(fake, kill_before=per_cutover + 5)
    with pytest.raises(Killed):
        convert(killed_zfs, ConvertRequest("encrypt", TOP, phase="cutover"), key=None)
    assert any("verified" in " ".join(c) for c in fake.changes)
    zfs, _ = zfs_for(fake)
    report = recover(zfs, request)
    assert report.actions and fake.datasets[TOP]["encryptionroot"] == TOP
    assert not [n for n in fake.datasets if ".encroot-convert" in n]
    assert fake.datasets[TOP]["mounted"] == "yes"


def test_a_kill_before_verification_is_undone_by_recover_and_the_tree_mounted() -> None:
    fake = tree()
    zfs, _ = zfs_for(fake)
    with Key.hex(HEX) as key:
        convert(zfs, ConvertRequest("encrypt", TOP, keyformat="hex", phase="initial"), key=key)
    killed_zfs, _ = zfs_for(fake, kill_before=4)  # take-over, 2 unmounts, then the snapshot
    with pytest.raises(Killed):
        convert(killed_zfs, ConvertRequest("encrypt", TOP, phase="cutover"), key=None)
    assert fake.datasets[TOP]["mounted"] == "no"
    zfs, _ = zfs_for(fake)
    recover(zfs, ConvertRequest("encrypt", TOP))
    assert fake.datasets[TOP]["encryption"] == "off" and fake.datasets[TOP]["mounted"] == "yes"
    assert not [n for n in fake.datasets if ".encroot-convert" in n]


def test_after_a_resumed_receive_what_follows_it_is_planned_and_sent() -> None:
    fake = tree()
    for name in [n for n in fake.datasets if n.startswith(f"{TOP}/c")]:
        del fake.datasets[name]  # one dataset: the next run's plan is the resume alone
    temp = f"{TOP}.encroot-convert"
    request = ConvertRequest("encrypt", TOP, keyformat="hex", phase="initial")
    killed, _ = zfs_for(fake, kill_before=3)  # the snapshot, the full receive, then -I
    with Key.hex(HEX) as key, pytest.raises(Killed):
        convert(killed, request, key=key)
    goal = next(n for n in fake.datasets if n.startswith(f"{TOP}@encroot-convert"))
    fake.datasets[temp]["receive_resume_token"] = "1-c0-9f-abc"  # the -I, cut
    fake.tokens["1-c0-9f-abc"] = goal
    zfs, runner = zfs_for(fake)
    with Key.hex(HEX) as key:
        convert(zfs, request, key=key)
    sends = [" ".join(c.argv[1:]) for c, _ in runner.calls
             if c.argv[1] == "send" and "-n" not in c.argv]
    assert sends[0] == "send -t 1-c0-9f-abc"  # the resume alone first, then the new goal
    assert len(sends) == 2 and sends[1].startswith(f"send -I {goal} ")

    def snapshots(name: str) -> list[str]:
        return sorted(n.split("@")[1] for n in fake.datasets if n.startswith(f"{name}@"))
    assert snapshots(temp) == snapshots(TOP) and len(snapshots(TOP)) == 3
    assert "receive_resume_token" not in fake.datasets[temp]


def test_catch_up_before_initial_is_refused_without_changes() -> None:
    fake = tree()
    zfs, _ = zfs_for(fake)
    with pytest.raises(ConvertRefused) as caught:
        convert(zfs, ConvertRequest("encrypt", TOP, phase="catch-up"), key=None)
    assert "--phase initial" in str(caught.value) and not fake.changes
