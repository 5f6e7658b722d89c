"""Boot a lab guest under QEMU and run one job in it.

A job is a folder shared with the guest over 9p (see ``guest/job-init.sh``
for the contract): the host writes the script, its arguments and
environment; the guest streams the script's stdout/stderr into files that
the host copies to its own streams as they grow, writes ``$OUT`` files and
the exit status, then powers off.  This checkout is shared read-only so the
guest runs the same encroot code as the host.

QEMU uses TCG (software emulation) by default: ``/dev/kvm`` exists on this
machine kind but stock kernels hang under its nested KVM.  Set
``ENCROOT_LAB_ACCEL=kvm`` to opt in where KVM works.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Protocol

from ..errors import LabError
from ..records import field, record
from .host import ensure_host_tools
from .image import STUB_INIT, Image

__all__ = ["GuestConfig", "JobHooks", "JobResult", "Sink", "qemu_argv", "run_job", "source_share"]

SETUP_FAILED = 125


@record(frozen=True)
class GuestConfig:
    """Resources and limits of one guest."""

    memory_mib: int = 3072
    cpus: int = 2
    accel: str = field(default_factory=lambda: os.environ.get("ENCROOT_LAB_ACCEL", "tcg"))
    # QEMU's -cpu model: the features the guest's kernel, glibc and OpenSSL choose code for
    cpu_model: str = field(default_factory=lambda: os.environ.get("ENCROOT_LAB_CPU", "max"))
    # extra guest kernel command line words, for experiments (ENCROOT_LAB_APPEND)
    kernel_args: str = field(default_factory=lambda: os.environ.get("ENCROOT_LAB_APPEND", ""))
    timeout: float = 3600.0


@record(frozen=True)
class JobResult:
    """How a job ended."""

    returncode: int
    zfs_version: str
    seconds: float


class Sink(Protocol):
    """Where a guest's stdout or stderr goes: a binary stream, or anything that writes bytes."""

    def write(self, data: bytes, /) -> object: ...

    def flush(self) -> object: ...


@record(frozen=True)
class JobHooks:
    """What a caller adds to one job, for guests that work together (``encroot.lab.pair``).

    ``qemu_args`` go on the QEMU command line (a ``-netdev``/``-device`` pair);
    ``files`` are written into the job folder (name -> text) before the boot;
    ``started`` is called with the job folder once the guest runs; setting
    ``stop`` kills the guest (the job then fails with ``stop_reason()``).
    """

    qemu_args: tuple[str, ...] = ()
    files: Mapping[str, str] = field(default_factory=dict)
    started: Callable[[Path], None] | None = None
    stop: threading.Event | None = None
    stop_reason: Callable[[], str] = lambda: "stopped by the caller"


def source_share() -> tuple[Path, str]:
    """The folder to share read-only with the guest, and where ``encroot`` sits inside it.

    In a checkout that is the checkout (so tests and bench scripts are
    there too) and ``src``; otherwise the folder that holds the package.
    """
    import encroot

    package_parent = Path(encroot.__file__).resolve().parent.parent
    for candidate in (package_parent, *package_parent.parents):
        if (candidate / "pyproject.toml").is_file():
            return candidate, str(package_parent.relative_to(candidate))
    return package_parent, "."


def qemu_argv(image: Image, job_dir: Path, share: Path, config: GuestConfig, *,
              interactive: bool = False, extra: Sequence[str] = ()) -> list[str]:
    """The QEMU command line for one guest (pure: no side effects).

    ``-nic none`` only drops QEMU's default network card: a device in
    ``extra`` (``-netdev`` and ``-device``) is then the guest's only one.
    """
    accel = "tcg,thread=multi" if config.accel == "tcg" else config.accel
    # init_on_alloc=0: Debian's kernel zeroes every page and slab object it hands out
    # (CONFIG_INIT_ON_ALLOC_DEFAULT_ON), which emulation makes dear; off, test modules
    # ran 3 to 8% faster (docs/lab.md). The guest is a throwaway test machine.
    cmdline = f"console=ttyS0 root=/dev/vda rw init={STUB_INIT} panic=-1 init_on_alloc=0"
    if not interactive:
        cmdline += " quiet loglevel=3"
    if config.kernel_args:
        cmdline += " " + config.kernel_args
    argv = [
        "qemu-system-x86_64",
        "-accel", accel, "-cpu", config.cpu_model,
        "-m", str(config.memory_mib), "-smp", str(config.cpus),
        "-kernel", str(image.kernel_file), "-initrd", str(image.initrd_file),
        "-append", cmdline,
        "-drive", f"file={image.rootfs_file},format=raw,if=virtio,snapshot=on",
        "-virtfs", f"local,path={job_dir},mount_tag=job,security_model=none,id=job",
        "-virtfs", f"local,path={share},mount_tag=src,security_model=none,readonly=on,id=src",
        "-device", "virtio-rng-pci",
        "-nic", "none", *extra, "-no-reboot", "-display", "none",
    ]
    if interactive:
        argv += ["-serial", "mon:stdio"]
    else:
        argv += ["-monitor", "none", "-serial", f"file:{job_dir / 'console.log'}"]
    return argv


def _prepare_job(job_dir: Path, script: Path, args: Sequence[str], env: Mapping[str, str],
                 share_rel: str) -> None:
    try:
        shutil.copyfile(script, job_dir / "script")
    except OSError as exc:
        raise LabError(f"script {str(script)!r}: cannot read it ({exc.strerror})") from exc
    init = resources.files("encroot.lab").joinpath("guest", "job-init.sh").read_text()
    (job_dir / "init.sh").write_text(init)
    (job_dir / "args").write_bytes(b"".join(a.encode() + b"\0" for a in args))
    lines = [f"ENCROOT_SRC_REL={share_rel}"]
    for key, value in env.items():
        if "\n" in key or "\n" in value or "=" in key:
            raise LabError(f"environment entry {key!r}: no newlines, no '=' in the name")
        lines.append(f"{key}={value}")
    (job_dir / "env").write_text("\n".join(lines) + "\n")
    for name in ("stdout", "stderr"):
        (job_dir / name).write_bytes(b"")
    (job_dir / "out").mkdir()


class _Tail:
    """Copies what a growing file gained since the last call to a stream."""

    def __init__(self, path: Path, stream: Sink) -> None:
        self.path, self.stream, self.offset = path, stream, 0

    def pump(self) -> None:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except OSError:
            return
        if data:
            self.offset += len(data)
            self.stream.write(data)
            self.stream.flush()


def _console_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no console log)"
    return "\n".join(text.replace("\r", "").splitlines()[-lines:])


def run_job(image: Image, script: Path, args: Sequence[str] = (), *,
            out_dir: Path | None = None, env: Mapping[str, str] | None = None,
            config: GuestConfig | None = None, interactive: bool = False,
            stdout: Sink | None = None, stderr: Sink | None = None,
            hooks: JobHooks | None = None) -> JobResult:
    """Boot a fresh guest, run ``script`` with bash as root, and return its exit status.

    Files the script writes under ``$OUT`` are copied to ``out_dir``.

    Raises:
        LabError: QEMU missing, the guest could not set up, it hung past
            ``config.timeout`` or was stopped through ``hooks.stop`` (then it
            is killed).
    """
    config = config or GuestConfig()
    hooks = hooks or JobHooks()
    ensure_host_tools(["qemu-system-x86_64"], lambda line: print(line, file=sys.stderr))
    share, share_rel = source_share()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="encroot-lab-job-") as tmp:
        job_dir = Path(tmp)
        job_env = dict(env or {})
        if interactive:
            job_env["ENCROOT_LAB_SHELL"] = "1"
        _prepare_job(job_dir, script, args, job_env, share_rel)
        for name, text in hooks.files.items():
            (job_dir / name).write_text(text)
        argv = qemu_argv(image, job_dir, share, config, interactive=interactive,
                         extra=hooks.qemu_args)
        tails = [_Tail(job_dir / "stdout", stdout or sys.stdout.buffer),
                 _Tail(job_dir / "stderr", stderr or sys.stderr.buffer)]
        _boot_and_wait(argv, job_dir, tails, config, interactive, hooks)
        result = _collect(job_dir, out_dir, started)
    return result


def _boot_and_wait(argv: list[str], job_dir: Path, tails: list[_Tail], config: GuestConfig,
                   interactive: bool, hooks: JobHooks) -> None:
    qemu_log = open(job_dir / "qemu.log", "wb")
    try:
        process = subprocess.Popen(
            argv,
            stdin=None if interactive else subprocess.DEVNULL,
            stdout=None if interactive else qemu_log,
            stderr=qemu_log,
        )
        if hooks.started is not None:
            hooks.started(job_dir)
        deadline = time.monotonic() + config.timeout
        while process.poll() is None:
            for tail in tails:
                tail.pump()
            if hooks.stop is not None and hooks.stop.is_set():
                process.kill()
                process.wait()
                for tail in tails:
                    tail.pump()
                raise LabError(f"the guest was killed: {hooks.stop_reason()}; last console "
                               "lines:\n" + _console_tail(job_dir / "console.log"))
            if time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise LabError(f"the guest did not finish within {config.timeout:.0f} s and "
                               "was killed; last console lines:\n"
                               + _console_tail(job_dir / "console.log"))
            time.sleep(0.2)
        for tail in tails:
            tail.pump()
    finally:
        qemu_log.close()
    if process.returncode != 0:
        detail = (job_dir / "qemu.log").read_text(errors="replace").strip()
        raise LabError(f"qemu exited with status {process.returncode}: {detail[-800:]}")


def _collect(job_dir: Path, out_dir: Path | None, started: float) -> JobResult:
    failed = job_dir / "setup-failed"
    if failed.exists():
        raise LabError("the guest could not set up: " + failed.read_text().strip()
                       + "\nlast console lines:\n" + _console_tail(job_dir / "console.log"))
    rc_file = job_dir / "rc"
    if not rc_file.exists():
        raise LabError("the guest stopped without reporting an exit status; last console "
                       "lines:\n" + _console_tail(job_dir / "console.log"))
    version_file = job_dir / "zfs-version"
    zfs_version = version_file.read_text().strip() if version_file.exists() else "unknown"
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(job_dir / "out", out_dir, dirs_exist_ok=True)
        (out_dir / "zfs-version.txt").write_text(zfs_version + "\n")
    return JobResult(int(rc_file.read_text().strip() or SETUP_FAILED), zfs_version,
                     time.monotonic() - started)
