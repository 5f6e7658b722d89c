"""Two lab guests linked only to each other, one script each, barriers between them.

Guest ``a`` and guest ``b`` boot side by side, each from its own image (so
each with its own OpenZFS version), each with its own job folder, script
and ``--out`` folder.  Their only network card is one virtio NIC each,
joined by a QEMU ``socket`` backend that carries Ethernet frames as UDP
datagrams between two ports of the host's loopback::

    guest a                     host 127.0.0.1                  guest b
    eth0  <-> -netdev socket,localaddr=:PA,udp=:PB  <->  localaddr=:PB,udp=:PA <-> eth0

UDP, not a TCP listen/connect pair (``-netdev stream``): neither QEMU has
to be up before the other, and probing a listening QEMU would take its one
connection.  The MAC addresses are fixed, so each guest's IPv6 link-local
address is known in advance (EUI-64, RFC 4291 appendix A); no other
address, no router, no DHCP.

Each guest's job starts with ``guest/pair-preamble.sh``: it brings the link
up, waits for duplicate address detection, checks that the kernel chose the
expected address and that there is no other network device, puts the
helpers ``lab-barrier`` and ``lab-ssh-setup`` on PATH and runs the script
with ``LAB_ROLE``, ``LAB_IFACE``, ``LAB_SELF_ADDR``, ``LAB_PEER_ADDR``,
``LAB_TO_PEER`` and ``LAB_FROM_PEER`` set (docs/lab.md, "Two guests").

Barriers go through the host, not the link: ``lab-barrier NAME`` writes
``barrier/NAME.reached`` in its job folder (a 9p share) and waits for
``NAME.go``.  The host's coordinator (:class:`_Coordinator`) sees both
marks, copies each guest's ``to-peer/`` files to the other's
``from-peer/`` and writes ``NAME.go`` on both sides; when one guest's
script has ended without reaching the barrier, it writes ``NAME.abort``
instead, so a guest never waits for a dead peer.  A guest whose peer failed
is killed ``grace`` seconds later.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from importlib import resources
from pathlib import Path

from ..errors import LabError
from ..records import field, record
from .image import Image
from .vm import GuestConfig, JobHooks, JobResult, Sink, run_job

__all__ = [
    "MACS",
    "ROLES",
    "GuestOutcome",
    "PairGuest",
    "PairResult",
    "free_udp_ports",
    "guest_env",
    "link_args",
    "link_local",
    "run_pair",
]

ROLES = ("a", "b")
# QEMU's own OUI; the last octet names the role.
MACS = {"a": "52:54:00:ec:00:0a", "b": "52:54:00:ec:00:0b"}
LOOPBACK = "127.0.0.1"
NETDEV_ID = "pair"
HELPERS = ("lab-barrier", "lab-ssh-setup")
# Memory of each guest: two share the machine.
PAIR_MEMORY_MIB = 2048
BARRIER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
POLL_SECONDS = 0.2


def _peer(role: str) -> str:
    return "b" if role == "a" else "a"


def link_local(mac: str) -> ipaddress.IPv6Address:
    """The IPv6 link-local address a Linux guest derives from ``mac`` (modified EUI-64).

    Raises:
        ValueError: ``mac`` is not six colon-separated hex octets.
    """
    octets = [int(part, 16) for part in mac.split(":")]
    if len(octets) != 6 or not all(0 <= o <= 255 for o in octets):
        raise ValueError(f"not a MAC address: {mac!r}")
    eui = [octets[0] ^ 0x02, *octets[1:3], 0xFF, 0xFE, *octets[3:]]
    return ipaddress.IPv6Address(bytes([0xFE, 0x80, 0, 0, 0, 0, 0, 0, *eui]))


def free_udp_ports(count: int = 2, host: str = LOOPBACK) -> tuple[int, ...]:
    """``count`` distinct UDP ports of ``host`` that were free a moment ago.

    The sockets are all bound before any is closed, so the ports differ; QEMU
    binds them again right after (a port taken in between makes QEMU fail to
    start, with its message in the error).
    """
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
    return tuple(ports)


def link_args(role: str, ports: dict[str, int]) -> tuple[str, ...]:
    """The ``-netdev``/``-device`` pair of ``role``'s guest: its port, then the peer's."""
    own, peer = ports[role], ports[_peer(role)]
    return ("-netdev", f"socket,id={NETDEV_ID},localaddr={LOOPBACK}:{own},udp={LOOPBACK}:{peer}",
            "-device", f"virtio-net-pci,netdev={NETDEV_ID},mac={MACS[role]}")


def guest_env(role: str) -> dict[str, str]:
    """What the preamble needs to find the link and name both ends."""
    peer = _peer(role)
    return {
        "LAB_ROLE": role,
        "LAB_SELF_MAC": MACS[role],
        "LAB_SELF_IP": str(link_local(MACS[role])),
        "LAB_PEER_IP": str(link_local(MACS[peer])),
    }


@record(frozen=True)
class PairGuest:
    """One side of the pair: its image, script and where its ``$OUT`` files go."""

    image: Image
    script: Path
    out_dir: Path | None = None


@record(frozen=True)
class GuestOutcome:
    """How one guest ended: its script's status, or why there is none."""

    role: str
    zfs_version: str
    seconds: float
    returncode: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.error is None


@record(frozen=True)
class PairResult:
    """Both guests' outcomes; ``returncode`` is what ``encroot lab pair`` exits with."""

    a: GuestOutcome
    b: GuestOutcome

    @property
    def ok(self) -> bool:
        return self.a.ok and self.b.ok

    @property
    def returncode(self) -> int:
        """0 when both scripts succeeded; else the first failure's status (1 without one)."""
        for outcome in (self.a, self.b):
            if not outcome.ok:
                return outcome.returncode or 1
        return 0


class _PrefixSink:
    """Writes whole lines to ``stream``, each after ``prefix``; keeps a partial last line."""

    def __init__(self, prefix: bytes, stream: Sink, lock: threading.Lock) -> None:
        self.prefix, self.stream, self.lock, self.pending = prefix, stream, lock, b""

    def write(self, data: bytes, /) -> int:
        lines = (self.pending + data).split(b"\n")
        self.pending = lines.pop()
        if lines:
            with self.lock:
                self.stream.write(b"".join(self.prefix + line + b"\n" for line in lines))
                self.stream.flush()
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self.pending:
            self.write(b"\n")


@record
class _Side:
    role: str
    stop: threading.Event = field(default_factory=threading.Event)
    stop_reason: str = ""
    job_dir: Path | None = None
    ended_at: float | None = None
    outcome: GuestOutcome | None = None

    def script_ended(self) -> str | None:
        """Why this guest will reach no further barrier, or None while its script runs."""
        if self.job_dir is not None:
            for name, what in (("rc", "its script exited with status "),
                               ("setup-failed", "its guest could not set up: ")):
                try:
                    return what + (self.job_dir / name).read_text().strip()
                except OSError:
                    continue
        if self.outcome is None:
            return None
        if self.outcome.error is not None:
            return "its guest stopped: " + self.outcome.error.splitlines()[0]
        return f"its script exited with status {self.outcome.returncode}"


class _Coordinator:
    """Releases barriers on both sides, relays ``to-peer/`` files, stops a failed pair.

    Runs in its own thread from :meth:`run` until :meth:`close`; every file
    operation tolerates a job folder that its guest just removed.
    """

    def __init__(self, sides: dict[str, _Side], grace: float) -> None:
        self.sides, self.grace = sides, grace
        self.released: set[str] = set()
        self.aborted: set[tuple[str, str]] = set()
        self.done = threading.Event()
        self.lock = threading.Lock()

    def started(self, role: str) -> Callable[[Path], None]:
        def hook(job_dir: Path) -> None:
            with self.lock:
                self.sides[role].job_dir = job_dir
        return hook

    def ended(self, role: str, outcome: GuestOutcome) -> None:
        with self.lock:
            side = self.sides[role]
            side.outcome, side.ended_at = outcome, time.monotonic()

    def close(self) -> None:
        self.done.set()

    def run(self) -> None:
        while not self.done.wait(POLL_SECONDS):
            with self.lock:
                self.step()

    def step(self) -> None:
        """One look at both job folders (called every ``POLL_SECONDS``)."""
        ended = {role: side.script_ended() for role, side in self.sides.items()}
        reached = {role: set(self._reached(side)) for role, side in self.sides.items()}
        if ended["a"] is None and ended["b"] is None:
            for name in sorted((reached["a"] & reached["b"]) - self.released):
                for role in ROLES:
                    self._relay(self.sides[_peer(role)], self.sides[role])
                for role in ROLES:
                    self._mark(self.sides[role], name, "go", "")
                self.released.add(name)
        for role in ROLES:
            why = ended[_peer(role)]
            if why is None:
                continue
            for name in sorted(reached[role] - self.released):
                if (role, name) not in self.aborted:
                    self._mark(self.sides[role], name, "abort",
                               f"guest {_peer(role)} will not reach barrier {name}: {why}")
                    self.aborted.add((role, name))
        now = time.monotonic()
        for role in ROLES:
            side, peer = self.sides[role], self.sides[_peer(role)]
            failed = peer.outcome is not None and not peer.outcome.ok
            if (failed and side.outcome is None and not side.stop.is_set()
                    and peer.ended_at is not None and now - peer.ended_at >= self.grace):
                side.stop_reason = (f"guest {peer.role} failed {self.grace:.0f} s earlier "
                                    "and this one was still running")
                side.stop.set()

    @staticmethod
    def _reached(side: _Side) -> Iterator[str]:
        if side.job_dir is None or side.outcome is not None:
            return
        try:
            for path in (side.job_dir / "barrier").glob("*.reached"):
                if BARRIER_NAME.fullmatch(path.stem):
                    yield path.stem
        except OSError:
            return

    @staticmethod
    def _relay(source: _Side, target: _Side) -> None:
        if source.job_dir is None or target.job_dir is None:
            return
        try:
            inbox = target.job_dir / "from-peer"
            inbox.mkdir(exist_ok=True)
            for path in (source.job_dir / "to-peer").glob("*"):
                if path.is_file():
                    (inbox / path.name).write_bytes(path.read_bytes())
        except OSError:
            return

    @staticmethod
    def _mark(side: _Side, name: str, kind: str, text: str) -> None:
        if side.job_dir is None:
            return
        try:
            temporary = side.job_dir / "barrier" / f"{name}.{kind}.tmp"
            temporary.write_text(text + "\n")
            temporary.rename(side.job_dir / "barrier" / f"{name}.{kind}")
        except OSError:
            return


PAIR_SCRIPT = "source /lab/job/pair-preamble.sh\nexec /bin/bash /lab/job/pair-script \"$@\"\n"


def _job_files(script: Path) -> dict[str, str]:
    """The pair's files in a job folder: the preamble, the helpers and the user's script."""
    guest = resources.files("encroot.lab").joinpath("guest")
    files = {name: guest.joinpath(name).read_text()
             for name in ("pair-preamble.sh", *HELPERS)}
    try:
        files["pair-script"] = script.read_text()
    except OSError as exc:
        raise LabError(f"script {str(script)!r}: cannot read it ({exc.strerror})") from exc
    return files


def run_pair(a: PairGuest, b: PairGuest, *, config: GuestConfig | None = None,
             grace: float = 60.0, stdout: Sink | None = None, stderr: Sink | None = None,
             say: Callable[[str], None] | None = None,
             run: Callable[..., JobResult] = run_job) -> PairResult:
    """Boot guests ``a`` and ``b`` linked to each other, run their scripts, wait for both.

    Output lines are prefixed ``[a]`` or ``[b]``.  A guest whose peer failed
    is killed after ``grace`` seconds; ``config.timeout`` bounds each guest.
    ``run`` boots one guest (:func:`encroot.lab.vm.run_job`; tests hand in
    a fake).

    Raises:
        LabError: a script cannot be read.  A guest that fails to boot or
            set up is reported in its :class:`GuestOutcome`, not raised.
    """

    config = config or GuestConfig(memory_mib=PAIR_MEMORY_MIB)
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    out_lock, err_lock = threading.Lock(), threading.Lock()
    guests = {"a": a, "b": b}
    ports = dict(zip(ROLES, free_udp_ports(2), strict=True))
    sides = {role: _Side(role) for role in ROLES}
    coordinator = _Coordinator(sides, grace)
    files = {role: _job_files(guest.script) for role, guest in guests.items()}

    with tempfile.TemporaryDirectory(prefix="encroot-lab-pair-") as tmp:
        wrapper = Path(tmp) / "pair.sh"
        wrapper.write_text(PAIR_SCRIPT)

        def one(role: str) -> None:
            guest, side = guests[role], sides[role]
            prefix = f"[{role}] ".encode()
            sinks = (_PrefixSink(prefix, stdout or sys.stdout.buffer, out_lock),
                     _PrefixSink(prefix, stderr or sys.stderr.buffer, err_lock))
            hooks = JobHooks(
                qemu_args=link_args(role, ports),
                files=files[role],
                started=coordinator.started(role), stop=side.stop,
                stop_reason=lambda: side.stop_reason)
            started = time.monotonic()
            try:
                result: JobResult = run(guest.image, wrapper, (),
                                            out_dir=guest.out_dir, env=guest_env(role),
                                            config=config, stdout=sinks[0], stderr=sinks[1],
                                            hooks=hooks)
                outcome = GuestOutcome(role, result.zfs_version, result.seconds,
                                       returncode=result.returncode)
            except LabError as exc:
                outcome = GuestOutcome(role, "unknown", time.monotonic() - started,
                                       error=str(exc))
            except Exception as exc:  # a thread must always report an outcome
                outcome = GuestOutcome(role, "unknown", time.monotonic() - started,
                                       error=f"{type(exc).__name__}: {exc}")
            finally:
                for sink in sinks:
                    sink.close()
            coordinator.ended(role, outcome)
            status = (f"exited with status {outcome.returncode}" if outcome.error is None
                      else f"failed: {outcome.error}")
            say(f"lab pair: guest {role} (OpenZFS {guests[role].image.zfs_package_version}) "
                f"{status} after {outcome.seconds:.0f} s")

        for role in ROLES:
            say(f"lab pair: guest {role}: OpenZFS {guests[role].image.zfs_package_version} "
                f"(kernel {guests[role].image.kernel}), MAC {MACS[role]}, "
                f"{link_local(MACS[role])}, UDP {LOOPBACK}:{ports[role]}")
        watcher = threading.Thread(target=coordinator.run, name="lab-pair-barriers",
                                   daemon=True)
        workers = [threading.Thread(target=one, args=(role,), name=f"lab-pair-{role}")
                   for role in ROLES]
        watcher.start()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        coordinator.close()
        watcher.join()
    outcome_a, outcome_b = sides["a"].outcome, sides["b"].outcome
    assert outcome_a is not None and outcome_b is not None
    return PairResult(outcome_a, outcome_b)
