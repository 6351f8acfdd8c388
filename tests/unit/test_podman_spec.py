import pytest

from vkpy.backend import Container, EnvVar, Mount, PodSpec, Resources
from vkpy.backends.podman import spec
from vkpy.backends.podman.spec import HostVolume
from vkpy.errors import UnsupportedPodFeature

UID = "0123abcd-4567-89ef-0123-456789abcdef"


def pod(*containers: Container, **kwargs: object) -> PodSpec:
    return PodSpec(
        uid=UID,
        namespace="ns",
        name="web",
        containers=containers or (Container("main", "busybox"),),
        **kwargs,  # type: ignore[arg-type]
    )


def body(container: Container, volumes: dict[str, HostVolume] | None = None, **kwargs: object):
    return spec.container_body(
        pod(container),
        container,
        node="node-a",
        init=False,
        index=0,
        volumes=volumes or {},
        deadline=None,
        **kwargs,  # type: ignore[arg-type]
    )


def test_names_carry_namespace_name_and_uid_prefix():
    assert spec.pod_name(pod()) == "vkpy-ns-web-0123abcd"
    assert spec.container_name("vkpy-ns-web-0123abcd", "main", 2) == "vkpy-ns-web-0123abcd-main-2"


@pytest.mark.parametrize("uid", ["", "../etc", "a/b", "-x", "a" * 200, "x y"])
def test_a_uid_unfit_for_names_and_paths_is_refused(uid):
    with pytest.raises(UnsupportedPodFeature):
        spec.check_uid(uid)


def test_pod_body_labels_network_and_hostname():
    created = spec.pod_body(
        pod(restart_policy="OnFailure", termination_grace_period_seconds=7),
        node="node-a",
        network="bridge",
        deadline=1234,
    )
    assert created["name"] == "vkpy-ns-web-0123abcd"
    assert created["netns"] == {"nsmode": "bridge"}
    assert created["hostname"] == "web"
    assert created["labels"] == {
        "vkpy.io/pod-uid": UID,
        "vkpy.io/node": "node-a",
        "vkpy.io/namespace": "ns",
        "vkpy.io/name": "web",
        "vkpy.io/restart-policy": "OnFailure",
        "vkpy.io/grace-seconds": "7",
        "vkpy.io/containers": "1",
        "vkpy.io/deadline": "1234",
    }


def test_host_network_pods_share_the_host_network_and_name():
    created = spec.pod_body(pod(host_network=True), node="n", network="bridge", deadline=None)
    assert created["netns"] == {"nsmode": "host"}
    assert "hostname" not in created
    assert "vkpy.io/deadline" not in created["labels"]


def test_hostname_is_cut_like_the_kubelet_does():
    assert spec.hostname("a" * 62 + "-b") == "a" * 62
    assert len(spec.hostname("x" * 100)) == 63


def test_container_labels_say_which_container_and_run():
    created = spec.container_body(
        pod(),
        Container("main", "busybox"),
        node="node-a",
        init=True,
        index=3,
        volumes={},
        deadline=99,
        restart_count=4,
    )
    labels = created["labels"]
    assert labels["vkpy.io/container"] == "main"
    assert labels["vkpy.io/init"] == "true"
    assert labels["vkpy.io/index"] == "3"
    assert labels["vkpy.io/restart-count"] == "4"
    assert labels["vkpy.io/deadline"] == "99"
    assert labels["vkpy.io/pod-uid"] == UID
    assert created["name"] == "vkpy-ns-web-0123abcd-main-4"
    assert created["pod"] == "vkpy-ns-web-0123abcd"
    assert created["init"] is True
    assert created["httpproxy"] is False


def test_command_is_the_entrypoint_and_args_the_cmd():
    both = body(Container("c", "busybox", command=("sh", "-c"), args=("echo $(x)",)))
    assert both["entrypoint"] == ["sh", "-c"]
    assert both["command"] == ["echo $(x)"]
    only_args = body(Container("c", "busybox", args=("--flag",)))
    assert "entrypoint" not in only_args and only_args["command"] == ["--flag"]
    neither = body(Container("c", "busybox"))
    assert "entrypoint" not in neither and "command" not in neither


def test_env_values_pass_untouched_and_the_last_duplicate_wins():
    hostile = "a'b\"c $(rm -rf /) `id` ;|& \n é"
    created = body(
        Container(
            "c", "busybox", env=(EnvVar("X", "first"), EnvVar("Y", hostile), EnvVar("X", "2"))
        )
    )
    assert created["env"] == {"X": "2", "Y": hostile}


def test_working_dir_is_created_when_missing():
    created = body(Container("c", "busybox", working_dir="/data/run"))
    assert created["work_dir"] == "/data/run"
    assert created["create_working_dir"] is True


def test_resources_become_cpu_quota_and_memory_without_swap():
    created = body(
        Container("c", "busybox", resources=Resources(cpu_millis=1500, memory_bytes=256 << 20))
    )
    assert created["resource_limits"] == {
        "cpu": {"quota": 150_000, "period": 100_000},
        "memory": {"limit": 256 << 20, "swap": 256 << 20},
    }
    assert "resource_limits" not in body(Container("c", "busybox"))


def test_a_tiny_cpu_limit_is_raised_to_the_kernel_minimum():
    created = body(Container("c", "busybox", resources=Resources(cpu_millis=1)))
    assert created["resource_limits"]["cpu"]["quota"] == 1000


def test_gpus_are_refused():
    with pytest.raises(UnsupportedPodFeature, match="GPU"):
        body(Container("c", "busybox", resources=Resources(gpus=1)))


def test_mounts_bind_the_host_side_with_read_only_forced_for_files():
    volumes = {
        "data": HostVolume("/state/u/volumes/data"),
        "cfg": HostVolume("/state/u/volumes/cfg", read_only=True),
    }
    created = body(
        Container(
            "c",
            "busybox",
            mounts=(
                Mount("data", "/data"),
                Mount("data", "/ro", read_only=True),
                Mount("cfg", "/etc/cfg"),
                Mount("data", "/sub", sub_path="a/b"),
            ),
        ),
        volumes,
    )
    assert created["mounts"] == [
        {"destination": "/data", "type": "bind", "source": "/state/u/volumes/data",
         "options": ["rbind", "rw"]},
        {"destination": "/ro", "type": "bind", "source": "/state/u/volumes/data",
         "options": ["rbind", "ro"]},
        {"destination": "/etc/cfg", "type": "bind", "source": "/state/u/volumes/cfg",
         "options": ["rbind", "ro"]},
        {"destination": "/sub", "type": "bind", "source": "/state/u/volumes/data/a/b",
         "options": ["rbind", "rw"]},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("mount", "message"),
    [
        (Mount("nope", "/x"), "does not define"),
        (Mount("data", "relative"), "absolute"),
        (Mount("data", "/x", sub_path="../../etc"), "subPath"),
        (Mount("data", "/x", sub_path="/etc"), "subPath"),
    ],
)
def test_bad_mounts_are_refused(mount, message):
    with pytest.raises(UnsupportedPodFeature, match=message):
        body(Container("c", "busybox", mounts=(mount,)), {"data": HostVolume("/v/data")})


def test_container_bodies_cover_init_then_app_containers_in_order():
    spec_ = pod(
        Container("app1", "busybox"),
        Container("app2", "busybox"),
        init_containers=(Container("init1", "busybox"), Container("init2", "busybox")),
    )
    bodies = spec.container_bodies(spec_, node="n", volumes={}, deadline=None)
    assert list(bodies) == ["init1", "init2", "app1", "app2"]
    assert [b["labels"]["vkpy.io/index"] for b in bodies.values()] == ["0", "1", "0", "1"]
    assert [b["labels"]["vkpy.io/init"] for b in bodies.values()] == [
        "true",
        "true",
        "false",
        "false",
    ]


def test_duplicate_container_names_are_refused():
    duplicated = pod(Container("x", "busybox"), init_containers=(Container("x", "busybox"),))
    with pytest.raises(UnsupportedPodFeature, match="unique"):
        spec.container_bodies(duplicated, node="n", volumes={}, deadline=None)


def test_a_restarted_body_differs_only_in_name_and_count():
    first = body(Container("main", "busybox", env=(EnvVar("A", "b"),)))
    again = spec.restarted(first, restart_count=3)
    assert again["name"] == "vkpy-ns-web-0123abcd-main-3"
    assert again["labels"]["vkpy.io/restart-count"] == "3"
    assert first["labels"]["vkpy.io/restart-count"] == "0"  # not modified in place
    assert {k: v for k, v in again.items() if k not in ("name", "labels")} == {
        k: v for k, v in first.items() if k not in ("name", "labels")
    }


@pytest.mark.parametrize(
    ("reference", "normalized"),
    [
        ("busybox", "docker.io/library/busybox"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("user/app:v1", "docker.io/user/app:v1"),
        ("localhost/busybox:latest", "localhost/busybox:latest"),
        ("localhost:5000/app", "localhost:5000/app"),
        ("quay.io/org/app@sha256:abc", "quay.io/org/app@sha256:abc"),
        ("registry.invalid/x:1", "registry.invalid/x:1"),
    ],
)
def test_short_image_names_mean_docker_hub(reference, normalized):
    assert spec.normalize_image(reference) == normalized
