"""Build and cache the lab's guest image: a small Debian with OpenZFS from Debian's packages.

The build runs on the host as root and takes about 8 minutes the first
time (debootstrap ~2 min, zfs-dkms compiling 3 to 5 min); the result is cached
under ``$ENCROOT_LAB_DIR`` (default ``~/.cache/encroot/lab``) in a folder
named by the recipe's cache key, and reused until the recipe changes.

An image folder holds ``vmlinuz``, ``initrd.img``, ``rootfs.img`` (a sparse
ext4 file made with ``mke2fs -d``, booted read-only behind a QEMU snapshot so
that every run starts fresh) and ``image.json`` (what was built).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import LabError
from ..records import record
from .host import ensure_host_tools, find_debian_mirror, require_root
from .recipes import Recipe, guest_sources, stub_init_text

__all__ = ["Image", "build_image", "build_images", "cache_root", "find_image"]

Say = Callable[[str], None]
STUB_INIT = "/usr/local/sbin/encroot-stub-init"
# Room left free on the guest's root file system for test pools and logs.
FREE_SPACE_MIB = 3072
# The steps that keep both cores busy (make -j in zfs-dkms's package script). Builds in
# several threads (build_images) take turns at them; the other steps wait on the network,
# the disk or one core, and overlap. (The modules check takes a turn only if it compiles.)
CPU_BOUND_STEPS = frozenset({"zfs"})
_compile_turn = threading.Lock()
BUILD_ENV = {"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8",
             "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
# Kbuild appends KCFLAGS to the guest kernel's flags, so zfs-dkms compiles (configure's
# probes included) without debug information, which dkms strips from the modules anyway:
# 3m15 against 3m34 and 4m00 for one 2.3 build on the 2-core machine (docs/lab.md).
NO_DEBUG_INFO = {"KCFLAGS": "-g0"}


@record(frozen=True)
class Image:
    """A built guest image and what it holds."""

    path: Path
    zfs_version: str
    zfs_package_version: str
    kernel: str
    suite: str

    @property
    def kernel_file(self) -> Path:
        return self.path / "vmlinuz"

    @property
    def initrd_file(self) -> Path:
        return self.path / "initrd.img"

    @property
    def rootfs_file(self) -> Path:
        return self.path / "rootfs.img"


def cache_root() -> Path:
    """Where images live: ``$ENCROOT_LAB_DIR`` or ``$XDG_CACHE_HOME/encroot/lab``."""
    explicit = os.environ.get("ENCROOT_LAB_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "encroot" / "lab"


def find_image(recipe: Recipe, root: Path | None = None) -> Image | None:
    """The cached image for ``recipe``, or None if it was never built (or is incomplete)."""
    folder = (root or cache_root()) / recipe.cache_key()
    try:
        meta = json.loads((folder / "image.json").read_text())
    except (OSError, ValueError):
        return None
    image = Image(folder, meta["zfs_version"], meta["zfs_package_version"], meta["kernel"],
                  meta["suite"])
    if not all(f.is_file() for f in (image.kernel_file, image.initrd_file, image.rootfs_file)):
        return None
    return image


@record
class _Build:
    """State shared by the build steps."""

    recipe: Recipe
    work: Path
    say: Say

    @property
    def root(self) -> Path:
        return self.work / "root"

    @property
    def log(self) -> Path:
        return self.work / "build.log"

    def run(self, argv: Sequence[str], *, chroot: bool = False,
            env: Mapping[str, str] | None = None) -> str:
        """Run a build command, appending its output to the build log; return stdout.

        ``env`` adds to ``BUILD_ENV`` (the compile's flags, ``compile_env``).
        """
        full = ["chroot", str(self.root), *argv] if chroot else list(argv)
        env = {**os.environ, **BUILD_ENV, **(env or {})}
        with open(self.log, "a") as log:
            log.write(f"\n$ {' '.join(full)}\n")
            log.flush()
            done = subprocess.run(full, stdout=subprocess.PIPE, stderr=log, text=True,
                                  env=env, check=False)
            log.write(done.stdout)
        if done.returncode != 0:
            raise LabError(f"command failed with status {done.returncode}: {' '.join(full)}",
                           log=str(self.log))
        return done.stdout

    def compile_env(self) -> dict[str, str]:
        """``NO_DEBUG_INFO`` unless the guest kernel's headers make BTF for modules.

        Trixie's headers do (``CONFIG_DEBUG_INFO_BTF_MODULES`` and a ``vmlinux``
        beside them): pahole then reads every module's debug information, and
        without it each module fails ("pahole: ...: Invalid argument"), the
        probes of zfs's configure first, which then reports "This kernel does
        not include the required loadable module support".  Bookworm's don't.
        A ``KCFLAGS`` of the host's never reaches the compile either way.
        """
        headers = self.root / "lib" / "modules" / self.kernel_version() / "build"
        try:
            config = (headers / ".config").read_text(errors="replace")
        except OSError:
            config = ""
        btf = "CONFIG_DEBUG_INFO_BTF_MODULES=y" in config.splitlines()
        return {"KCFLAGS": ""} if btf and (headers / "vmlinux").exists() else dict(NO_DEBUG_INFO)

    def kernel_version(self) -> str:
        versions = sorted(p.name for p in (self.root / "lib" / "modules").iterdir())
        if len(versions) != 1:
            raise LabError(f"expected one guest kernel, found {versions}", log=str(self.log))
        return versions[0]


@contextlib.contextmanager
def _chroot_mounts(root: Path) -> Iterator[None]:
    """/proc, /sys and /dev inside the chroot for package scripts; always unmounted."""
    mounted: list[Path] = []
    try:
        for argv, target in ((["-t", "proc", "proc"], "proc"), (["-t", "sysfs", "sys"], "sys"),
                             (["--bind", "/dev"], "dev")):
            path = root / target
            subprocess.run(["mount", *argv, str(path)], check=True, capture_output=True)
            mounted.append(path)
        yield
    finally:
        for path in reversed(mounted):
            subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def _step_debootstrap(build: _Build) -> None:
    mirror = find_debian_mirror()
    argv = ["debootstrap", "--variant=minbase",
            "--include=" + ",".join(build.recipe.base_packages),
            build.recipe.suite, str(build.root)]
    build.run(argv + ([mirror] if mirror else []))


def _step_apt_sources(build: _Build) -> None:
    sources = build.root / "etc" / "apt" / "sources.list"
    sources.write_text(guest_sources(sources.read_text(), build.recipe))
    # A lab guest may be built from a snapshot mirror whose Release files have expired.
    (build.root / "etc/apt/apt.conf.d/99encroot-lab").write_text(
        'Acquire::Check-Valid-Until "false";\nAPT::Install-Recommends "false";\n')
    # Package scripts must not start services inside the chroot.
    policy = build.root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    build.run(["apt-get", "update", "-q"], chroot=True)


def _step_headers(build: _Build) -> None:
    kernel = build.kernel_version()
    build.run(["apt-get", "install", "-y", "-q", f"linux-headers-{kernel}",
               *build.recipe.guest_packages], chroot=True)


def _step_zfs(build: _Build) -> None:
    target = ["-t", build.recipe.zfs_suite] if build.recipe.backports else []
    build.run(["apt-get", "install", "-y", "-q", *target, "zfs-dkms", "zfsutils-linux"],
              chroot=True, env=build.compile_env())


def _step_check_modules(build: _Build) -> None:
    kernel = build.kernel_version()
    found = list((build.root / "lib" / "modules" / kernel).rglob("zfs.ko*"))
    if not found:
        build.say("zfs.ko was not built by the package scripts; running dkms autoinstall")
        with _compile_turn:
            build.run(["dkms", "autoinstall", "-k", kernel], chroot=True,
                      env=build.compile_env())
        found = list((build.root / "lib" / "modules" / kernel).rglob("zfs.ko*"))
    if not found:
        raise LabError(f"no zfs.ko for guest kernel {kernel}", log=str(build.log))
    build.run(["depmod", "-a", kernel], chroot=True)


def _step_guest_setup(build: _Build) -> None:
    root = build.root
    stub = root / STUB_INIT.lstrip("/")
    stub.write_text(stub_init_text())
    stub.chmod(0o755)
    (root / "etc/hostname").write_text("encroot-lab\n")
    (root / "etc/fstab").write_text("# the lab's init mounts what it needs\n")
    build.run(["apt-get", "clean"], chroot=True)
    for pattern in ("var/lib/apt/lists/*_*", "var/lib/dkms/*/*/build", "usr/share/doc/*",
                    "usr/share/man/*", "usr/share/locale/*"):
        for path in root.glob(pattern):
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def _step_disk_image(build: _Build) -> None:
    kernel = build.kernel_version()
    shutil.copyfile(build.root / "boot" / f"vmlinuz-{kernel}", build.work / "vmlinuz")
    shutil.copyfile(build.root / "boot" / f"initrd.img-{kernel}", build.work / "initrd.img")
    used = int(build.run(["du", "-s", "--block-size=1M", str(build.root)]).split()[0])
    size_mib = int(used * 1.2) + FREE_SPACE_MIB
    build.run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", "encroot-lab", "-d", str(build.root),
               str(build.work / "rootfs.img"), f"{size_mib}M"])


def _write_metadata(build: _Build, seconds: float) -> None:
    package = build.run(["dpkg-query", "-W", "-f", "${Version}", "zfsutils-linux"],
                        chroot=True).strip()
    meta = {
        "zfs_version": build.recipe.zfs_version,
        "zfs_package_version": package,
        "kernel": build.kernel_version(),
        "suite": build.recipe.suite,
        "cache_key": build.recipe.cache_key(),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(seconds),
    }
    (build.work / "image.json").write_text(json.dumps(meta, indent=2) + "\n")


_STEPS: tuple[tuple[str, str, Callable[[_Build], None]], ...] = (
    ("debootstrap", "minimal Debian guest with its kernel (about 2 min)", _step_debootstrap),
    ("apt-sources", "guest apt sources with contrib and backports", _step_apt_sources),
    ("headers", "kernel headers and Python for the guest", _step_headers),
    ("zfs", "zfs-dkms and zfsutils-linux; compiles the modules (3 to 5 min)", _step_zfs),
    ("modules", "check zfs.ko exists for the guest kernel", _step_check_modules),
    ("guest-setup", "init stub and trimming", _step_guest_setup),
    ("disk-image", "ext4 root disk with mke2fs -d", _step_disk_image),
)


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


@contextlib.contextmanager
def _heartbeat(say: Say, label: str, every: float = 60.0) -> Iterator[None]:
    """Print that a long step is still running, with its elapsed time."""
    stop = threading.Event()
    started = time.monotonic()

    def beat() -> None:
        while not stop.wait(every):
            say(f"{label}: still running ({_elapsed(time.monotonic() - started)})")

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def build_image(recipe: Recipe, *, say: Say, force: bool = False,
                root: Path | None = None) -> Image:
    """Build the guest image for ``recipe`` unless a cached one exists.

    Raises:
        LabError: not root, a host tool missing, or a build step failed
            (the message names the step and the log).
    """
    root = root or cache_root()
    with _locked(root / f"{recipe.cache_key()}.lock"):
        existing = find_image(recipe, root)
        if existing is not None and not force:
            return existing
        require_root("building the lab image")
        ensure_host_tools(["debootstrap", "mke2fs"], say)
        final = root / recipe.cache_key()
        work = root / f"{recipe.cache_key()}.building"
        for stale in (work, final):
            if stale.exists():
                shutil.rmtree(stale)
        work.mkdir(parents=True)
        build = _Build(recipe, work, say)
        say(f"building the lab image for OpenZFS {recipe.zfs_version} "
            f"({recipe.suite} guest) in {work}; log: {build.log}")
        started = time.monotonic()
        _run_steps(build)
        _write_metadata(build, time.monotonic() - started)
        shutil.rmtree(build.root)
        work.rename(final)
        say(f"lab image ready in {_elapsed(time.monotonic() - started)}: {final}")
    image = find_image(recipe, root)
    if image is None:
        raise LabError(f"the lab image in {final} is incomplete after building")
    return image


def build_images(recipes: Sequence[Recipe], *, say: Say, force: bool = False,
                 root: Path | None = None) -> list[Image]:
    """Build the images of ``recipes`` unless cached, side by side; return them in order.

    Each image builds in its own thread, so that one guest's download and
    unpacking (debootstrap, apt: the network, the disk, one core) overlap
    another's compile. The compile steps (``CPU_BOUND_STEPS``) take turns:
    each already keeps both cores busy.

    Raises:
        LabError: as :func:`build_image`; the first failed build's error, after
            every other build has finished or failed (each failure is said).
    """
    root = root or cache_root()
    unique = list({r.cache_key(): r for r in recipes}.values())
    missing = [r for r in unique if force or find_image(r, root) is None]
    if missing:
        require_root("building the lab image")
        ensure_host_tools(["debootstrap", "mke2fs"], say)  # once, before the threads
    with ThreadPoolExecutor(max_workers=max(1, len(missing))) as pool:
        futures = {r.cache_key(): pool.submit(build_image, r, say=say, force=force, root=root)
                   for r in unique}
    failures = [e for e in (f.exception() for f in futures.values()) if e is not None]
    for failure in failures[1:]:
        say(f"lab build also failed: {failure}")
    if failures:
        raise failures[0]
    return [futures[r.cache_key()].result() for r in recipes]


def _run_steps(build: _Build) -> None:
    total = len(_STEPS)
    with contextlib.ExitStack() as stack:
        for number, (name, what, step) in enumerate(_STEPS, start=1):
            if name == "apt-sources":
                stack.enter_context(_chroot_mounts(build.root))
            if name == "disk-image":
                stack.close()
            say_prefix = f"[lab {build.recipe.zfs_version} {number}/{total}] {name}"
            cpu_bound = name in CPU_BOUND_STEPS
            if cpu_bound and _compile_turn.locked():
                build.say(f"{say_prefix}: waiting for another image's compile to end")
            with _compile_turn if cpu_bound else contextlib.nullcontext():
                _run_step(build, say_prefix, name, what, step)


def _run_step(build: _Build, say_prefix: str, name: str, what: str,
              step: Callable[[_Build], None]) -> None:
    """One build step with its progress lines; a failure names the step and the log."""
    build.say(f"{say_prefix}: {what}")
    started = time.monotonic()
    try:
        with _heartbeat(build.say, say_prefix):
            step(build)
    except LabError as exc:
        raise LabError(f"lab build failed at step {name!r}: {exc.reason}",
                       log=exc.log or str(build.log)) from exc
    except OSError as exc:
        raise LabError(f"lab build failed at step {name!r}: {exc}",
                       log=str(build.log)) from exc
    build.say(f"{say_prefix}: done in {_elapsed(time.monotonic() - started)}")
