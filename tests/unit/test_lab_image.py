"""Building several guest images side by side: overlap, compile turns, failures."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from encroot.errors import LabError
from encroot.lab import image
from encroot.lab.image import CPU_BOUND_STEPS, Image, _Build, _run_steps, build_images
from encroot.lab.recipes import RECIPES, Recipe


class StepLog:
    """Which steps ran at the same time as which, across threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: set[str] = set()
        self.overlaps: set[tuple[str, str]] = set()

    def step(self, name: str) -> Callable[[_Build], None]:
        def run(build: _Build) -> None:
            me = f"{build.recipe.zfs_version}:{name}"
            with self.lock:
                for other in self.running:
                    self.overlaps.add((min(me, other), max(me, other)))
                self.running.add(me)
            time.sleep(0.05)
            with self.lock:
                self.running.discard(me)
        return run


@contextlib.contextmanager
def _no_mounts(root: Path) -> Iterator[None]:
    yield


def test_compile_steps_take_turns_while_the_others_overlap(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = StepLog()
    monkeypatch.setattr(image, "_STEPS", tuple(
        (name, "what", log.step(name)) for name in ("debootstrap", "zfs", "modules")))
    monkeypatch.setattr(image, "_chroot_mounts", _no_mounts)
    builds = [_Build(RECIPES[v], tmp_path / v, lambda line: None) for v in ("2.1", "2.4")]
    threads = [threading.Thread(target=_run_steps, args=(b,)) for b in builds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert ("2.1:debootstrap", "2.4:debootstrap") in log.overlaps
    compiles = {(a, b) for a, b in log.overlaps
                if a.split(":")[1] in CPU_BOUND_STEPS and b.split(":")[1] in CPU_BOUND_STEPS}
    assert compiles == set()


class FakeBuilds:
    """``build_image`` stand-in: records each build; some are slow, some fail."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: list[str] = []
        self.slow: set[str] = set()
        self.failing: set[str] = set()

    def __call__(self, recipe: Recipe, *, say: object, force: bool, root: Path) -> Image:
        version = recipe.zfs_version
        self.started.append(version)
        if version in self.failing:
            raise LabError(f"lab build failed at step 'zfs': {version}")
        time.sleep(0.05 if version in self.slow else 0)
        self.finished.append(version)
        return Image(root / recipe.cache_key(), version, "pkg", "kernel", recipe.suite)


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> FakeBuilds:
    fake = FakeBuilds()
    monkeypatch.setattr(image, "require_root", lambda what: None)
    monkeypatch.setattr(image, "ensure_host_tools", lambda programs, say: None)
    monkeypatch.setattr(image, "build_image", fake)
    return fake


def test_images_come_back_in_the_order_asked(tmp_path: Path, builds: FakeBuilds) -> None:
    builds.slow.add("2.3")
    recipes = [RECIPES["2.3"], RECIPES["2.1"], RECIPES["2.4"]]
    images = build_images(recipes, say=lambda line: None, root=tmp_path)
    assert [i.zfs_version for i in images] == ["2.3", "2.1", "2.4"]
    assert builds.finished[-1] == "2.3"


def test_a_failed_build_is_raised_after_the_others_finish(
        tmp_path: Path, builds: FakeBuilds) -> None:
    builds.slow.add("2.3")
    builds.failing.update({"2.1", "2.4"})
    said: list[str] = []
    with pytest.raises(LabError, match=r"2\.1"):
        build_images([RECIPES["2.1"], RECIPES["2.3"], RECIPES["2.4"]], say=said.append,
                     root=tmp_path)
    assert builds.finished == ["2.3"]
    assert said == ["lab build also failed: lab build failed at step 'zfs': 2.4"]


def test_a_version_asked_twice_is_built_once(tmp_path: Path, builds: FakeBuilds) -> None:
    images = build_images([RECIPES["2.4"], RECIPES["2.1"], RECIPES["2.4"]],
                          say=lambda line: None, force=True, root=tmp_path)
    assert [i.zfs_version for i in images] == ["2.4", "2.1", "2.4"]
    assert sorted(builds.started) == ["2.1", "2.4"]


def _kernel_headers(root: Path, *, btf: bool) -> None:
    """A guest root with one kernel whose headers make BTF for modules, or not."""
    headers = root / "usr/src/linux-headers-6.1.0-1-amd64"
    headers.mkdir(parents=True)
    modules = root / "lib/modules/6.1.0-1-amd64"
    modules.mkdir(parents=True)
    (modules / "build").symlink_to("../../../usr/src/linux-headers-6.1.0-1-amd64")
    config = "CONFIG_DEBUG_INFO_BTF=y\nCONFIG_DEBUG_INFO_BTF_MODULES=y\n" if btf else \
        "# CONFIG_DEBUG_INFO_BTF is not set\n"
    (headers / ".config").write_text(config)
    if btf:
        (headers / "vmlinux").write_bytes(b"")


@pytest.mark.parametrize(("btf", "flags"), [(False, "-g0"), (True, "")])
def test_modules_compile_without_debug_information_unless_the_kernel_makes_btf(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, btf: bool, flags: str) -> None:
    seen: list[dict[str, str]] = []

    def fake_run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        env = kwargs["env"]
        assert isinstance(env, dict)
        seen.append(env)
        return subprocess.CompletedProcess(argv, 0, stdout="")

    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setenv("KCFLAGS", "-g")  # the host's own never reaches the compile
    _kernel_headers(tmp_path / "root", btf=btf)
    build = _Build(RECIPES["2.3"], tmp_path, lambda line: None)
    build.run(["dkms", "autoinstall"], chroot=True, env=build.compile_env())
    assert seen[0]["KCFLAGS"] == flags
    assert seen[0]["DEBIAN_FRONTEND"] == "noninteractive"
