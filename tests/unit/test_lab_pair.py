"""The lab's pair of guests without QEMU: the link, the addresses, barriers and outcomes.

The barrier tests run the real ``lab-barrier`` helper on the host against the
real coordinator, with a fake ``run_job`` that runs each script in a job
folder of its own instead of booting a guest.
"""

from __future__ import annotations

import io
import ipaddress
import os
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from encroot.errors import LabError
from encroot.lab.image import Image
from encroot.lab.pair import (
    MACS,
    PAIR_SCRIPT,
    GuestOutcome,
    PairGuest,
    PairResult,
    _PrefixSink,
    free_udp_ports,
    guest_env,
    link_args,
    link_local,
    run_pair,
)
from encroot.lab.vm import GuestConfig, JobHooks, JobResult, qemu_argv


def test_link_local_is_modified_eui64() -> None:
    # the address every QEMU guest with the default MAC gets
    assert link_local("52:54:00:12:34:56") == ipaddress.IPv6Address("fe80::5054:ff:fe12:3456")
    # the universal/local bit flips both ways
    assert str(link_local("02:00:00:00:00:01")) == "fe80::ff:fe00:1"
    assert str(link_local(MACS["a"])) == "fe80::5054:ff:feec:a"
    assert str(link_local(MACS["b"])) == "fe80::5054:ff:feec:b"
    assert link_local(MACS["a"]).is_link_local


@pytest.mark.parametrize("mac", ["52:54:00:12:34", "52:54:00:12:34:567", "zz:54:00:12:34:56"])
def test_link_local_refuses_what_is_no_mac(mac: str) -> None:
    with pytest.raises(ValueError):
        link_local(mac)


def test_free_udp_ports_differ_and_can_be_bound() -> None:
    ports = free_udp_ports(2)
    assert len(set(ports)) == 2 and all(1024 <= p <= 65535 for p in ports)
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", port))


def test_link_args_cross_the_ports_and_fix_the_macs() -> None:
    ports = {"a": 40001, "b": 40002}
    assert link_args("a", ports) == (
        "-netdev", "socket,id=pair,localaddr=127.0.0.1:40001,udp=127.0.0.1:40002",
        "-device", "virtio-net-pci,netdev=pair,mac=52:54:00:ec:00:0a")
    assert link_args("b", ports) == (
        "-netdev", "socket,id=pair,localaddr=127.0.0.1:40002,udp=127.0.0.1:40001",
        "-device", "virtio-net-pci,netdev=pair,mac=52:54:00:ec:00:0b")


def test_a_pair_guest_has_one_network_device_and_no_default_one(tmp_path: Path) -> None:
    image = Image(tmp_path, "2.1", "2.1.11-1", "6.1.0-1-amd64", "bookworm")
    argv = qemu_argv(image, tmp_path / "job", tmp_path / "src", GuestConfig(memory_mib=2048),
                     extra=link_args("a", {"a": 1, "b": 2}))
    assert argv.count("-netdev") == 1 and argv.count("-nic") == 1
    assert argv[argv.index("-nic") + 1] == "none"
    devices = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-device"]
    assert devices == ["virtio-rng-pci", "virtio-net-pci,netdev=pair,mac=52:54:00:ec:00:0a"]
    assert argv[argv.index("-m") + 1] == "2048"


def test_guest_env_names_both_ends() -> None:
    assert guest_env("b") == {"LAB_ROLE": "b", "LAB_SELF_MAC": "52:54:00:ec:00:0b",
                              "LAB_SELF_IP": "fe80::5054:ff:feec:b",
                              "LAB_PEER_IP": "fe80::5054:ff:feec:a"}


def test_prefix_sink_writes_whole_lines() -> None:
    out = io.BytesIO()
    sink = _PrefixSink(b"[a] ", out, threading.Lock())
    sink.write(b"one\ntw")
    assert out.getvalue() == b"[a] one\n"
    sink.write(b"o\n\nthree")
    sink.close()
    assert out.getvalue() == b"[a] one\n[a] two\n[a] \n[a] three\n"


def test_pair_result_status() -> None:
    good = GuestOutcome("a", "zfs-2.1.11", 1.0, returncode=0)
    assert PairResult(good, GuestOutcome("b", "z", 1.0, returncode=0)).returncode == 0
    assert PairResult(good, GuestOutcome("b", "z", 1.0, returncode=3)).returncode == 3
    died = GuestOutcome("a", "unknown", 1.0, error="qemu exited")
    assert PairResult(died, good).returncode == 1 and not PairResult(died, good).ok


# A guest without QEMU: the job's files in a folder, the user's script run by bash with
# lab-barrier on PATH and the pair's variables set, the status in "rc" as job-init.sh does.
HELPERS = resources.files("encroot.lab").joinpath("guest")


class FakeGuests:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir()
        for name in ("lab-barrier",):
            target = self.bin / name
            target.write_text(HELPERS.joinpath(name).read_text())
            target.chmod(0o755)
        self.hooks: dict[str, JobHooks] = {}

    def __call__(self, image: Image, script: Path, args: Sequence[str], *,
                 out_dir: Path | None, env: Mapping[str, str], config: GuestConfig,
                 stdout: Any, stderr: Any, hooks: JobHooks) -> JobResult:
        role = env["LAB_ROLE"]
        assert script.read_text() == PAIR_SCRIPT
        self.hooks[role] = hooks
        job = self.root / role
        job.mkdir()
        for name, text in hooks.files.items():
            (job / name).write_text(text)
        for folder in ("barrier", "to-peer", "from-peer"):
            (job / folder).mkdir()
        assert hooks.started is not None
        hooks.started(job)
        process = subprocess.Popen(
            ["bash", str(job / "pair-script")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, **env, "PATH": f"{self.bin}:{os.environ['PATH']}",
                 "LAB_JOB_DIR": str(job), "LAB_TO_PEER": str(job / "to-peer"),
                 "LAB_FROM_PEER": str(job / "from-peer")})
        while process.poll() is None:
            assert hooks.stop is not None
            if hooks.stop.is_set():
                process.kill()
                process.wait()
                raise LabError(f"the guest was killed: {hooks.stop_reason()}")
            time.sleep(0.05)
        out, err = process.communicate()
        stdout.write(out)
        stderr.write(err)
        (job / "rc").write_text(f"{process.returncode}\n")
        return JobResult(process.returncode, f"zfs-fake-{role}", 0.1)


def _pair(tmp_path: Path, script_a: str, script_b: str, *, grace: float = 30.0
          ) -> tuple[PairResult, str, str]:
    image = Image(tmp_path, "2.1", "2.1.11-1", "6.1.0-1-amd64", "bookworm")
    paths = []
    for role, text in (("a", script_a), ("b", script_b)):
        path = tmp_path / f"{role}.sh"
        path.write_text("set -e\n" + text)
        paths.append(path)
    guests = tmp_path / "guests"
    guests.mkdir()
    out, err = io.BytesIO(), io.BytesIO()
    result = run_pair(PairGuest(image, paths[0]), PairGuest(image, paths[1]), grace=grace,
                      stdout=out, stderr=err, say=lambda line: None, run=FakeGuests(guests))
    return result, out.getvalue().decode(), err.getvalue().decode()


def test_barrier_orders_the_two_scripts_and_relays_files(tmp_path: Path) -> None:
    result, out, err = _pair(
        tmp_path,
        'echo "key of a" > "$LAB_TO_PEER/a.pub"\nlab-barrier keys\n'
        'echo "a got: $(cat "$LAB_FROM_PEER/b.pub")"\nlab-barrier done\n',
        'sleep 1\necho "key of b" > "$LAB_TO_PEER/b.pub"\nlab-barrier keys\n'
        'echo "b got: $(cat "$LAB_FROM_PEER/a.pub")"\nlab-barrier done\n')
    assert result.ok, err
    assert "[a] a got: key of b\n" in out and "[b] b got: key of a\n" in out


def test_barrier_aborts_when_the_peer_ended_first(tmp_path: Path) -> None:
    started = time.monotonic()
    result, _out, err = _pair(tmp_path, "lab-barrier never\n", "exit 3\n")
    assert time.monotonic() - started < 20
    assert (result.a.returncode, result.b.returncode) == (1, 3)
    assert ("[a] lab-barrier never: guest b will not reach barrier never: its script exited "
            "with status 3\n") in err
    assert result.returncode == 1


def test_a_guest_whose_peer_failed_is_killed_after_the_grace(tmp_path: Path) -> None:
    result, _out, _err = _pair(tmp_path, "sleep 60\n", "exit 4\n", grace=0.5)
    assert result.b.returncode == 4
    assert result.a.error is not None
    assert "guest b failed 0 s earlier and this one was still running" in result.a.error


def test_barrier_names_are_checked_and_used_once(tmp_path: Path) -> None:
    result, out, err = _pair(
        tmp_path,
        'lab-barrier "bad name" || echo "status $?"\nlab-barrier x\n'
        'lab-barrier x || echo "again $?"\n',
        "lab-barrier x\n")
    assert result.ok, err
    assert "[a] status 2\n" in out and "[a] again 2\n" in out
    assert "[a] lab-barrier: barrier x was already used in this run\n" in err


def test_an_unreadable_script_is_refused_before_any_boot(tmp_path: Path) -> None:
    image = Image(tmp_path, "2.1", "2.1.11-1", "6.1.0-1-amd64", "bookworm")
    with pytest.raises(LabError, match="cannot read it"):
        run_pair(PairGuest(image, tmp_path / "nope.sh"), PairGuest(image, tmp_path / "no.sh"),
                 say=lambda line: None, run=FakeGuests(tmp_path))


def test_the_cli_refuses_an_unknown_version_before_any_boot(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from encroot.cli import main

    script = tmp_path / "s.sh"
    script.write_text("true\n")
    assert main(["lab", "pair", "--zfs-a", "2.1", "--zfs-b", "9.9", str(script)]) == 2
    assert capsys.readouterr().err == ("encroot: --zfs '9.9': the lab offers OpenZFS 2.1, "
                                       "2.3, 2.4\n")
