"""encroot migrate and receive over SSH on real OpenZFS and real OpenSSH: two pools of one
guest, one reached through a private ``sshd`` on 127.0.0.1.

The module starts ``sshd -f CONFIG -D -e`` with a host key and user keys generated
in a temporary folder (``PermitRootLogin prohibit-password``, ``StrictModes no``),
and writes client configurations (``Host lab-remote``) that encroot is given with
``--ssh-option -F --ssh-option FILE``: the good one (known host key, authorized key)
and one per failure (a closed port, a key the server does not know, an empty
known_hosts, a key whose forced command hides ``/usr/sbin`` so the remote shell finds
no ``zfs``).  Migrations reuse ``test_migrate``'s saved pools and its checks.
``encroot receive HOST:TARGET``: a raw encrypted stream replacing an unencrypted
target there, a plain ``-d`` receive compared with ``ssh HOST zfs receive -d``, and a
SIGKILL of encroot mid-stream (nothing goes on there) followed by ``--recover``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from encroot import Key

from .conftest import PoolFactory, PoolMaker
from .helpers import (
    PASSPHRASE,
    Run,
    create_encrypted,
    encroot,
    exists,
    load_key,
    names_under,
    process_files,
    prop,
    sh,
    snapshot_guids,
    write_files,
)
from .test_migrate import (  # noqa: F401 (fixtures used by name)
    DST_PASSPHRASE,
    Saved,
    assert_migrated,
    restore,
    saved_pools,
)
from .test_receive_orphans import receives_into, wait_until
from .test_secrets import scan_files

pytestmark = pytest.mark.zfs

HOST = "lab-remote"


@dataclass(frozen=True)
class SshLab:
    folder: Path
    port: int
    configs: dict[str, Path]  # "good", "closed-port", "unknown-key", "unknown-host", "no-zfs"

    def options(self, kind: str = "good") -> str:
        return f"--ssh-option -F --ssh-option {self.configs[kind]}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _keygen(path: Path) -> str:
    sh(f"ssh-keygen -q -t ed25519 -N '' -C encroot-lab -f {path}")
    return Path(f"{path}.pub").read_text().strip()


def _client(folder: Path, name: str, port: int, identity: Path, known: Path) -> Path:
    path = folder / f"ssh_config-{name}"
    path.write_text(f"""Host {HOST}
  HostName 127.0.0.1
  Port {port}
  User root
  IdentityFile {identity}
  IdentitiesOnly yes
  IdentityAgent none
  UserKnownHostsFile {known}
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  ConnectTimeout 20
""")
    return path


@pytest.fixture(scope="module")
def ssh_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshLab]:
    folder = tmp_path_factory.mktemp("ssh")
    sh("ip link set lo up; mkdir -p /run/sshd && chmod 0755 /run/sshd")
    host_public = _keygen(folder / "host_key")
    user_public = _keygen(folder / "user_key")
    _keygen(folder / "stranger_key")
    nozfs_public = _keygen(folder / "nozfs_key")
    hide = folder / "no-zfs.sh"  # the remote shell of this key finds no zfs: /usr/sbin hidden
    hide.write_text("#!/bin/sh\nexec unshare -m sh -c 'mount -t tmpfs none /usr/sbin && "
                    "eval \"$SSH_ORIGINAL_COMMAND\"'\n")
    hide.chmod(0o755)
    (folder / "authorized_keys").write_text(
        f"{user_public}\ncommand=\"{hide}\" {nozfs_public}\n")
    port = _free_port()
    config = folder / "sshd_config"
    config.write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {folder / "host_key"}
PidFile {folder / "sshd.pid"}
PermitRootLogin prohibit-password
AuthorizedKeysFile {folder / "authorized_keys"}
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
MaxSessions 50
MaxStartups 50
""")
    log = open(folder / "sshd.log", "wb")
    daemon = subprocess.Popen(["/usr/sbin/sshd", "-f", str(config), "-D", "-e"],
                              stdout=log, stderr=log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.2)
    else:
        daemon.kill()
        raise AssertionError(f"sshd did not listen: {(folder / 'sshd.log').read_text()}")
    known = folder / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {host_public}\n")
    empty = folder / "known_hosts-empty"
    empty.write_text("")
    configs = {
        "good": _client(folder, "good", port, folder / "user_key", known),
        "closed-port": _client(folder, "closed", _free_port(), folder / "user_key", known),
        "unknown-key": _client(folder, "stranger", port, folder / "stranger_key", known),
        "unknown-host": _client(folder, "unknown", port, folder / "user_key", empty),
        "no-zfs": _client(folder, "nozfs", port, folder / "nozfs_key", known),
    }
    yield SshLab(folder, port, configs)
    daemon.terminate()
    daemon.wait()
    log.close()


def encroot_run(args: str) -> Run:
    done = subprocess.run(["encroot", *args.split()], capture_output=True, check=False)
    return Run(done.returncode, done.stdout.decode(errors="replace"),
               done.stderr.decode(errors="replace"))


@pytest.fixture
def pools(make_pool: PoolMaker, saved_pools: Saved) -> tuple[str, str, Path, Path]:  # noqa: F811
    return restore(make_pool, saved_pools)


def _processes(*words: str) -> list[tuple[int, str]]:
    """(pid, command line) of processes whose command line holds every word."""
    found = []
    for pid, _, data in process_files():
        line = data.replace(b"\0", b" ").decode(errors="replace")
        if pid != os.getpid() and all(word in line for word in words):
            found.append((pid, line))
    return found


def _scan_while_running(process: subprocess.Popen[bytes], needles: list[bytes]) -> list[str]:
    """Every process's cmdline and environ, read again and again until ``process`` ends."""
    leaks = []
    while process.poll() is None:
        for pid, part, data in process_files(("cmdline", "environ")):
            if any(needle in data for needle in needles):
                leaks.append(f"pid {pid} {part}: {data[:200]!r}")
        time.sleep(0.1)
    return leaks


@pytest.mark.all_versions
def test_push_migrates_everything_and_no_key_leaks_on_either_side(
        ssh_lab: SshLab, pools: tuple[str, str, Path, Path]) -> None:
    source, destination, source_key, destination_key = pools
    run = subprocess.Popen(
        ["encroot", "migrate", *ssh_lab.options().split(), "--key-file", str(source_key),
         "--new-key-file", str(destination_key), "--root-data=dataset:rootdata",
         source, f"{HOST}:{destination}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    needles = [PASSPHRASE.encode(), DST_PASSPHRASE.encode()]
    leaks = _scan_while_running(run, needles)
    out, err = run.communicate()
    assert run.returncode == 0, err.decode()
    assert leaks == []
    assert_migrated(source, destination)
    for pool in (source, destination):
        history = sh(f"zpool history -il {pool}").stdout.encode()
        assert not any(needle in history for needle in needles)
    assert [p for p in scan_files(needles) if not p.endswith(".key")] == []
    assert not any(needle in out + err for needle in needles)
    status = encroot_run(f"status {ssh_lab.options()} {HOST}:{destination}")
    assert status.returncode == 0 and f"{destination}/data/a" in status.stdout


def test_pull_initial_then_cutover(ssh_lab: SshLab,
                                  pools: tuple[str, str, Path, Path]) -> None:
    source, destination, source_key, destination_key = pools
    initial = encroot_run(f"migrate {ssh_lab.options()} --phase initial {HOST}:{source} "
                          f"{destination}")
    assert initial.returncode == 0, initial.stderr
    cutover = encroot_run(f"migrate {ssh_lab.options()} --phase cutover --key-file "
                          f"{source_key} --new-key-file {destination_key} "
                          f"--root-data=dataset:rootdata {HOST}:{source} {destination}")
    assert cutover.returncode == 0, cutover.stderr
    assert_migrated(source, destination)


def _wait_for(words: tuple[str, ...], seconds: float = 120) -> list[tuple[int, str]]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = _processes(*words)
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no process with {words} within {seconds} s")


def _finish_initial_and_check(ssh_lab: SshLab, source: str, destination: str) -> None:
    again = encroot_run(f"migrate {ssh_lab.options()} --phase initial {source} "
                        f"{HOST}:{destination}")
    assert again.returncode == 0, again.stderr
    staged = snapshot_guids(f"{destination}/encroot-migrate")
    assert staged and staged == {k: v for k, v in snapshot_guids(source).items()
                                 if k in staged}
    assert prop(destination, "encroot:migrate") == "-"


def _initial_mid_stream(ssh_lab: SshLab, source: str, destination: str
                        ) -> subprocess.Popen[bytes]:
    """A push initial phase, once its stream flows into DST (SRC gets enough data that
    the stream still flows a second after it starts)."""
    write_files(prop(f"{source}/data/a", "mountpoint"), {"big.bin": os.urandom(48 << 20)})
    run = subprocess.Popen(["encroot", "migrate", *ssh_lab.options().split(), "--phase",
                            "initial", source, f"{HOST}:{destination}"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for(("receive", f"{destination}/encroot-migrate"))
    time.sleep(1)
    return run


def test_a_cut_ssh_connection_mid_initial_then_the_phase_again(
        ssh_lab: SshLab, pools: tuple[str, str, Path, Path]) -> None:
    source, destination, _, _ = pools
    run = _initial_mid_stream(ssh_lab, source, destination)
    for pid, _ in _processes("ControlMaster=yes", str(ssh_lab.configs["good"])):
        os.kill(pid, signal.SIGKILL)  # the connection drops under the stream
    _, err = run.communicate(timeout=300)
    assert run.returncode in (1, 4), err.decode()
    errors = [line for line in err.decode().splitlines() if line.startswith("encroot: ")]
    assert len(errors) == 1 and errors[0].startswith(f"encroot: {HOST}: "), err.decode()
    _finish_initial_and_check(ssh_lab, source, destination)


def test_sigkill_of_the_local_encroot_mid_initial_then_the_phase_again(
        ssh_lab: SshLab, pools: tuple[str, str, Path, Path]) -> None:
    source, destination, _, _ = pools
    run = _initial_mid_stream(ssh_lab, source, destination)
    run.send_signal(signal.SIGKILL)
    run.communicate()
    deadline = time.monotonic() + 60  # the transfer ends with encroot, on both sides
    while _processes("receive", f"{destination}/encroot-migrate") or \
            _processes("send", "-v", "-P", f"{source}@"):
        assert time.monotonic() < deadline, "a transfer outlived the encroot that ran it"
        time.sleep(0.2)
    _finish_initial_and_check(ssh_lab, source, destination)


@pytest.mark.parametrize(("kind", "says"), [
    pytest.param("unknown-key", "ssh authentication failed", marks=pytest.mark.all_versions),
    ("closed-port", "unreachable over ssh"),
    ("unknown-host", "its ssh host key is not known"),
    ("no-zfs", "zfs is not installed there"),
])
def test_a_host_that_cannot_be_used_is_one_line_exit_4_changing_nothing(
        ssh_lab: SshLab, make_pool: PoolFactory, kind: str, says: str) -> None:
    source = make_pool(key=Key.passphrase(PASSPHRASE))
    destination = make_pool(key=Key.passphrase(PASSPHRASE))
    before = snapshot_guids(source)
    done = encroot_run(f"migrate {ssh_lab.options(kind)} --phase initial {source} "
                       f"{HOST}:{destination}")
    assert done.returncode == 4, done.stderr
    assert done.stderr.startswith(f"encroot: {HOST}: {says}"), done.stderr
    assert done.stderr.count("\n") == 1
    assert snapshot_guids(source) == before
    assert not exists(f"{destination}/encroot-migrate")
    assert prop(destination, "encroot:migrate") == "-"


def test_a_remote_pool_without_the_encryption_feature_is_refused(
        ssh_lab: SshLab, make_pool: PoolFactory) -> None:
    source = make_pool(key=Key.passphrase(PASSPHRASE))
    destination = make_pool(no_features=True)
    done = encroot_run(f"migrate {ssh_lab.options()} --phase initial {source} "
                       f"{HOST}:{destination}")
    assert done.returncode == 1, done.stderr
    assert f"feature@encryption is not enabled on {destination} on host {HOST}" in done.stderr
    assert done.stderr.count("\n") == 1
    assert not exists(f"{destination}/encroot-migrate")
    assert snapshot_guids(source) == {}


# -- encroot receive into a dataset on the "remote" host --------------------------------

def _encrypted_source(pool: str, size: int = 256 << 10) -> str:
    fs = f"{pool}/fs"
    create_encrypted(fs)
    write_files(f"/{fs}", {"file": b"new\n", "big.bin": os.urandom(size)})
    sh(f"zfs snapshot {fs}@A")
    return fs


def _old_target(pool: str) -> str:
    target = f"{pool}/fs"
    sh(f"zfs create '{target}'")
    write_files(f"/{target}", {"old": b"old\n"})
    return target


@pytest.mark.all_versions
def test_receive_replaces_a_remote_unencrypted_target_across_the_boundary(
        ssh_lab: SshLab, make_pool: PoolFactory) -> None:
    source, destination = make_pool(), make_pool()
    fs = _encrypted_source(source)
    target = _old_target(destination)
    done = encroot(f"receive -F -u --allow-encryption-change {ssh_lab.options()} "
                   f"{HOST}:{target}", stdin_from=f"zfs send -w {fs}@A")
    assert done.returncode == 0, done.stderr
    assert f"replaced {target}" in done.stdout and "encryption off" in done.stdout
    assert snapshot_guids(target) == snapshot_guids(fs)
    assert prop(target, "encryption") == "aes-256-gcm"
    assert prop(target, "encryptionroot") == target
    assert prop(target, "keystatus") == "unavailable"
    assert prop(target, "encroot:recv-verified") == "-"
    assert names_under(destination) == [destination, target, f"{target}@A"]
    load_key(target)
    sh(f"zfs mount '{target}'")
    assert Path(f"/{target}/file").read_bytes() == b"new\n"


def test_a_plain_remote_receive_is_ssh_host_zfs_receive(
        ssh_lab: SshLab, make_pool: PoolFactory, tmp_path: Path) -> None:
    source, theirs, ours = make_pool(), make_pool(), make_pool()
    sh(f"zfs create -p {source}/sub/fs && zfs snapshot -r {source}/sub@A")
    stream = tmp_path / "stream"
    sh(f"zfs send -R {source}/sub@A > {stream}")
    config = ssh_lab.configs["good"]

    def both(below: str) -> tuple[Run, Run]:
        zfs_side = sh(f"ssh -F {config} {HOST} zfs receive -d -u {theirs}{below} < {stream}",
                      check=False)
        encroot_side = sh(f"encroot receive -d -u {ssh_lab.options()} {HOST}:{ours}{below} "
                          f"< {stream}", check=False)
        return zfs_side, encroot_side

    zfs_side, encroot_side = both("")
    assert (encroot_side.returncode, encroot_side.stdout, encroot_side.stderr) == \
        (zfs_side.returncode, zfs_side.stdout, zfs_side.stderr) == (0, "", "")
    assert sorted(name[len(ours):] for name in names_under(ours)) == \
        sorted(name[len(theirs):] for name in names_under(theirs)) == \
        ["", "/sub", "/sub/fs", "/sub/fs@A", "/sub@A"]
    assert snapshot_guids(ours) == snapshot_guids(theirs)
    zfs_side, encroot_side = both("/missing")  # zfs's refusal, word for word
    assert encroot_side.returncode == zfs_side.returncode != 0
    assert encroot_side.stderr.replace(ours, "POOL") == zfs_side.stderr.replace(theirs, "POOL")
    assert "does not exist" in zfs_side.stderr


def test_sigkill_of_the_local_encroot_mid_receive_then_recover(
        ssh_lab: SshLab, make_pool: PoolFactory, tmp_path: Path) -> None:
    source, destination = make_pool(), make_pool()
    fs = _encrypted_source(source, size=4 << 20)
    target = _old_target(destination)
    temp = f"{target}.encroot-recv"
    stream = tmp_path / "stream"
    sh(f"zfs send -w {fs}@A > {stream}")
    process = subprocess.Popen(
        ["encroot", "receive", "-F", "-u", "--allow-encryption-change",
         *ssh_lab.options().split(), f"{HOST}:{target}"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert process.stdin is not None
    try:
        process.stdin.write(stream.read_bytes()[:400_000])
        process.stdin.flush()
        wait_until(lambda: exists(temp) and receives_into(target), 60,
                   "the remote receive never started")
        process.send_signal(signal.SIGKILL)
        process.wait()
        # this test still holds the stream's write end: only encroot's death ends the receive
        wait_until(lambda: not receives_into(target)
                   and not _processes(str(ssh_lab.configs["good"]), temp), 60,
                   "the remote zfs receive or its ssh outlived the encroot that ran it")
        assert not exists(temp), "ZFS did not undo the cut receive"
        assert prop(target, "mounted") == "yes"
        assert Path(f"/{target}/old").read_bytes() == b"old\n"
        recovered = encroot_run(f"receive --recover {ssh_lab.options()} {HOST}:{target}")
        assert recovered.returncode == 0, recovered.stderr
        assert recovered.stdout.startswith(f"{HOST}:{target}: ")
        assert names_under(destination) == [destination, target]
        assert prop(target, "encryption") == "off"
        assert Path(f"/{target}/old").read_bytes() == b"old\n"
    finally:
        process.stdin.close()
        if process.poll() is None:
            process.kill()
        process.wait()
