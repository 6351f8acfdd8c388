import pytest

from vkpy.testing import kubebinaries
from vkpy.testing.errors import TestbedError

GO_MOD = """\
module k8s.io/kubernetes

replace (
	k8s.io/api => ./staging/src/k8s.io/api
	k8s.io/client-go => ./staging/src/k8s.io/client-go
	github.com/other/thing => github.com/fork/thing v1.0.0
)
"""


def test_staging_replacements_are_found():
    assert sorted(kubebinaries._REPLACE_LINE.findall(GO_MOD)) == [
        "k8s.io/api",
        "k8s.io/client-go",
    ]


def test_kubebuilder_assets_without_binaries_names_what_is_missing(tmp_path, monkeypatch):
    (tmp_path / "kube-apiserver").write_text("")
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path))
    with pytest.raises(
        TestbedError, match="lacks kube-scheduler, kube-controller-manager, kubelet; unset it"
    ):
        kubebinaries.find_binaries()


def test_kubebuilder_assets_with_binaries_is_used(tmp_path, monkeypatch):
    for name in kubebinaries.BINARIES:
        (tmp_path / name).write_text("")
        (tmp_path / name).chmod(0o755)
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path))
    assert kubebinaries.find_binaries() == tmp_path


def test_missing_go_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TestbedError, match="Go is missing"):
        kubebinaries.ensure_binaries()


def test_kubebuilder_assets_stand_for_the_control_planes_version_only(tmp_path, monkeypatch):
    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "kube-apiserver").write_text("")
    (assets / "kube-apiserver").chmod(0o755)
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(assets))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    old = kubebinaries.SPDY_APISERVER_VERSION
    assert kubebinaries.find_binaries(old, kubebinaries.APISERVER_ONLY) is None
    cached = kubebinaries.cache_dir(old)
    cached.mkdir(parents=True)
    (cached / "kube-apiserver").write_text("")
    (cached / "kube-apiserver").chmod(0o755)
    assert kubebinaries.find_binaries(old, kubebinaries.APISERVER_ONLY) == cached
