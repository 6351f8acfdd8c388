import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from vkpy.backend import Container, File, Mount, PodSpec, Volume
from vkpy.backends.podman import volumes
from vkpy.backends.podman.spec import HostVolume
from vkpy.errors import UnsupportedPodFeature


def pod(*vols: Volume, mounts: tuple[Mount, ...] = ()) -> PodSpec:
    return PodSpec(
        uid="uid-1",
        namespace="ns",
        name="web",
        containers=(Container("main", "busybox", mounts=mounts),),
        volumes=vols,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_plan_places_each_kind_of_volume(tmp_path):
    planned = volumes.plan(
        pod(
            Volume("scratch", "emptyDir"),
            Volume("fast", "emptyDir", medium="Memory"),
            Volume("cfg", "files"),
            Volume("host", "hostPath", host_path=str(tmp_path / "allowed" / "x")),
        ),
        pod_dir=tmp_path / "state" / "uid-1",
        memory_dir=tmp_path / "shm",
        allowed_host_paths=[str(tmp_path / "allowed")],
    )
    assert planned == {
        "scratch": HostVolume(str(tmp_path / "state" / "uid-1" / "volumes" / "scratch")),
        "fast": HostVolume(str(tmp_path / "shm" / "uid-1" / "fast")),
        "cfg": HostVolume(str(tmp_path / "state" / "uid-1" / "volumes" / "cfg"), read_only=True),
        "host": HostVolume(str(tmp_path / "allowed" / "x")),
    }


@pytest.mark.parametrize("host_path", ["/etc", "relative/path", "ALLOWED/../outside", ""])
def test_host_paths_outside_the_allowed_directories_are_refused(tmp_path, host_path):
    (tmp_path / "allowed").mkdir()
    path = host_path.replace("ALLOWED", str(tmp_path / "allowed"))
    with pytest.raises(UnsupportedPodFeature, match="hostPath"):
        volumes.plan(
            pod(Volume("h", "hostPath", host_path=path)),
            pod_dir=tmp_path / "p",
            memory_dir=tmp_path / "m",
            allowed_host_paths=[str(tmp_path / "allowed")],
        )


def test_a_symlink_out_of_an_allowed_directory_is_refused(tmp_path):
    (tmp_path / "allowed").mkdir()
    (tmp_path / "allowed" / "escape").symlink_to("/etc")
    with pytest.raises(UnsupportedPodFeature, match="hostPath"):
        volumes.plan(
            pod(Volume("h", "hostPath", host_path=str(tmp_path / "allowed" / "escape"))),
            pod_dir=tmp_path / "p",
            memory_dir=tmp_path / "m",
            allowed_host_paths=[str(tmp_path / "allowed")],
        )


def test_stage_writes_files_with_the_pods_modes_in_a_private_directory(tmp_path):
    spec = pod(
        Volume("cfg", "files", files=(File("a.conf", b"x=1\n", mode=0o640),
                                       File("deep/er/b", b"\x00\xff"))),
        Volume("sec", "files", files=(File("token", b"t0k3n", mode=0o644),), sensitive=True),
        Volume("scratch", "emptyDir"),
        mounts=(Mount("scratch", "/s", sub_path="made/for/me"),),
    )  # fmt: skip
    pod_dir = tmp_path / "state" / "uid-1"
    planned = volumes.plan(spec, pod_dir=pod_dir, memory_dir=tmp_path / "m", allowed_host_paths=[])
    volumes.stage(spec, planned, pod_dir=pod_dir)
    root = pod_dir / "volumes"
    assert mode(pod_dir) == 0o700
    assert (root / "cfg" / "a.conf").read_bytes() == b"x=1\n"
    assert mode(root / "cfg" / "a.conf") == 0o640
    assert (root / "cfg" / "deep" / "er" / "b").read_bytes() == b"\x00\xff"
    assert mode(root / "cfg") == 0o755
    assert mode(root) == 0o700  # other users of the host never get in
    assert mode(root / "sec") == 0o755
    assert mode(root / "sec" / "token") == 0o644
    assert mode(root / "scratch") == 0o777
    assert (root / "scratch" / "made" / "for" / "me").is_dir()


@pytest.mark.parametrize("path", ["../escape", "/abs", "a/../../b", ""])
def test_file_paths_must_stay_inside_their_volume(tmp_path, path):
    spec = pod(Volume("cfg", "files", files=(File(path, b"x"),)))
    planned = volumes.plan(spec, pod_dir=tmp_path / "p", memory_dir=tmp_path, allowed_host_paths=[])
    with pytest.raises(UnsupportedPodFeature):
        volumes.stage(spec, planned, pod_dir=tmp_path / "p")
    assert not (tmp_path / "escape").exists()


def test_specs_are_saved_privately_and_read_back(tmp_path):
    bodies = {"main": {"name": "x", "env": {"SECRET": "v"}}}
    volumes.save_specs(tmp_path / "p", bodies)
    assert mode(tmp_path / "p" / volumes.SPECS) == 0o600
    assert volumes.load_specs(tmp_path / "p") == bodies
    assert volumes.load_specs(tmp_path / "missing") is None
    (tmp_path / "p" / volumes.SPECS).write_text("{not json")
    assert volumes.load_specs(tmp_path / "p") is None


def test_remove_is_idempotent(tmp_path):
    (tmp_path / "p" / "volumes").mkdir(parents=True)
    (tmp_path / "m").mkdir()
    volumes.remove(tmp_path / "p", tmp_path / "m")
    assert not (tmp_path / "p").exists() and not (tmp_path / "m").exists()
    volumes.remove(tmp_path / "p", tmp_path / "m")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root gives files to another group")
def test_fs_group_owns_the_files_and_may_read_them(tmp_path):
    spec = replace(
        pod(Volume("sec", "files", files=(File("d/token", b"t", mode=0o600),), sensitive=True)),
        fs_group=4242,
    )
    pod_dir = tmp_path / "state" / "uid-1"
    planned = volumes.plan(spec, pod_dir=pod_dir, memory_dir=tmp_path / "m", allowed_host_paths=[])
    volumes.stage(spec, planned, pod_dir=pod_dir)
    root = pod_dir / "volumes" / "sec"
    for path, wanted in ((root, 0o2755), (root / "d", 0o2755), (root / "d" / "token", 0o640)):
        assert (path.stat().st_gid, mode(path)) == (4242, wanted), path
    assert mode(pod_dir) == 0o700
