from dataclasses import replace
from datetime import UTC, datetime

import pytest

from vkpy.backends.podman import observed, status
from vkpy.backends.podman.observed import Instance

T0 = 1_800_000_000.0  # a fixed "now"
ZERO = -62135596800  # Podman's zero time as a Unix time


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def entry(**overrides: object) -> dict[str, object]:
    labels = {
        "vkpy.io/pod-uid": "uid-1",
        "vkpy.io/node": "n",
        "vkpy.io/namespace": "ns",
        "vkpy.io/name": "web",
        "vkpy.io/container": "main",
        "vkpy.io/init": "false",
        "vkpy.io/index": "0",
        "vkpy.io/restart-count": "0",
        "vkpy.io/restart-policy": "OnFailure",
        "vkpy.io/grace-seconds": "5",
    }
    labels.update(overrides.pop("labels", {}))  # type: ignore[arg-type]
    base: dict[str, object] = {
        "Id": "c1",
        "Labels": labels,
        "PodName": "vkpy-ns-web-uid1",
        "IsInfra": False,
        "State": "running",
        "ExitCode": 0,
        "StartedAt": int(T0) - 10,
        "ExitedAt": ZERO,
        "Image": "localhost/busybox:latest",
        "ImageID": "d9" * 32,
    }
    return base | overrides


def inst(
    container: str = "main",
    *,
    state: str = "running",
    exit_code: int = 0,
    restarts: int = 0,
    init: bool = False,
    index: int = 0,
    policy: str = "OnFailure",
    deadline: int | None = None,
    started: float | None = T0 - 10,
    finished: float | None = None,
    expected: int | None = None,
) -> Instance:
    return Instance(
        id=f"{container}-{restarts}",
        uid="uid-1",
        namespace="ns",
        name="web",
        pod="vkpy-ns-web-uid1",
        container=container,
        init=init,
        index=index,
        restart_count=restarts,
        policy=policy,  # type: ignore[arg-type]
        deadline=deadline,
        grace_seconds=5,
        expected=expected,
        state=state,
        exit_code=exit_code,
        started_at=at(started) if started is not None else None,
        finished_at=at(finished) if finished is not None else None,
    )


def ended(container: str = "main", code: int = 0, *, finished: float = T0 - 5, **kw) -> Instance:
    return inst(container, state="exited", exit_code=code, finished=finished, **kw)


def created(container: str = "main", **kw) -> Instance:
    return inst(container, state="created", started=None, **kw)


def delay(restart_count: int) -> float:
    return 10.0 * (1 << restart_count)


def run_of(*instances: Instance, now: float = T0):
    (pod,) = observed.group(instances).values()
    return status.pod_run(pod, now=now, delay=delay, pod_ip="10.0.0.5")


# ---------------------------------------------------------------- times


def test_unix_times_treat_zero_and_year_one_as_unset():
    assert observed.unix_time(ZERO) is None
    assert observed.unix_time(0) is None
    assert observed.unix_time(None) is None
    assert observed.unix_time(T0) == at(T0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-25T06:34:19.737178726Z", datetime(2026, 11, 25, 6, 34, 19, 737178, UTC)),
        ("2026-11-25T06:34:19Z", datetime(2026, 11, 25, 6, 34, 19, tzinfo=UTC)),
        ("2026-11-25T07:34:19.5+01:00", datetime(2026, 11, 25, 6, 34, 19, 500000, UTC)),
        ("0001-01-01T00:00:00Z", None),
        ("", None),
        (None, None),
        ("yesterday", None),
    ],
)
def test_podman_rfc3339_times(text, expected):
    assert observed.podman_time(text) == expected


# ---------------------------------------------------------------- parsing


def test_a_list_entry_becomes_an_instance():
    parsed = observed.from_list_entry(entry(labels={"vkpy.io/deadline": "1800000100"}))
    assert parsed is not None
    assert (parsed.uid, parsed.namespace, parsed.name, parsed.container) == (
        "uid-1",
        "ns",
        "web",
        "main",
    )
    assert parsed.policy == "OnFailure" and parsed.grace_seconds == 5
    assert parsed.deadline == 1_800_000_100
    assert parsed.running and parsed.started_at == at(T0 - 10) and parsed.finished_at is None
    assert parsed.expected is None  # a pod from before the label: taken as complete


def test_a_pod_knows_whether_all_its_containers_were_created():
    pods = observed.group([inst("a", expected=2), created("b", index=1, expected=2)])
    assert pods["uid-1"].complete
    half = observed.group([inst("a", expected=2)])
    assert not half["uid-1"].complete
    labelled = observed.from_list_entry(entry(labels={"vkpy.io/containers": "3"}))
    assert labelled is not None and labelled.expected == 3


def test_the_infra_container_and_foreign_containers():
    infra = observed.from_list_entry(entry(IsInfra=True, Labels={"vkpy.io/pod-uid": "uid-1"}))
    assert infra is not None and infra.infra
    assert observed.from_list_entry(entry(Labels={"other": "x"})) is None


def test_inspect_gives_the_ending_precisely():
    ending = observed.ending_from_inspect(
        {
            "State": {
                "ExitCode": 137,
                "OOMKilled": True,
                "StartedAt": "2026-11-25T06:34:19.737178726Z",
                "FinishedAt": "2026-11-25T06:34:19.735797309Z",  # Podman: a hair early
                "Error": "",
            }
        }
    )
    assert ending.exit_code == 137 and ending.oom_killed
    assert ending.finished_at == ending.started_at  # never before the start


def test_instances_group_into_pods_with_ordered_histories():
    pods = observed.group(
        [
            ended("main", 1, restarts=0),
            ended("main", 1, restarts=1),
            inst("main", restarts=2),
            inst("side", index=1),
            ended("setup", init=True),
            replace(inst("", state="running"), id="infra", container=""),
        ]
    )
    pod = pods["uid-1"]
    assert pod.infra is not None and pod.infra.id == "infra"
    assert [h.name for h in pod.app] == ["main", "side"]
    assert [h.name for h in pod.init] == ["setup"]
    main = pod.app[0]
    assert main.current.restart_count == 2
    assert main.previous is not None and main.previous.restart_count == 1
    assert [i.restart_count for i in main.older] == [0]
