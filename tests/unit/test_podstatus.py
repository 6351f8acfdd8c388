from datetime import UTC, datetime

import pytest

from vkpy.backend import ContainerStatus, PodRun, Running, Terminated, Waiting
from vkpy.podstatus import Observation, phase, pod_status, same_status

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


def pod(policy="Never", init=(), containers=("main",)):
    return {
        "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
        "spec": {
            "restartPolicy": policy,
            "initContainers": [{"name": n, "image": "img"} for n in init],
            "containers": [{"name": n, "image": "img"} for n in containers],
        },
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "True",
                    "lastTransitionTime": "2026-11-25T11:00:00Z",
                }
            ],
        },
    }


def done(name, code):
    return ContainerStatus(
        name,
        Terminated(code, "Completed" if code == 0 else "Error", started_at=NOW, finished_at=NOW),
    )


def running(name):
    return ContainerStatus(name, Running(NOW))


def run(*containers, init=()):
    return PodRun("u1", "default", "p", tuple(containers), tuple(init))


@pytest.mark.parametrize(
    ("policy", "containers", "expected"),
    [
        ("Never", [done("main", 0)], "Succeeded"),
        ("Never", [done("main", 3)], "Failed"),
        ("OnFailure", [done("main", 3)], "Running"),
        ("OnFailure", [done("main", 0)], "Succeeded"),
        ("Always", [done("main", 0)], "Running"),
        ("Never", [running("main")], "Running"),
        ("Never", [ContainerStatus("main", Waiting("ContainerCreating"))], "Pending"),
        (
            "Always",
            [
                ContainerStatus(
                    "main", Waiting("CrashLoopBackOff"), last_state=Terminated(1, "Error")
                )
            ],
            "Running",
        ),
    ],
)
def test_phase_follows_the_kubelet(policy, containers, expected):
    assert phase(pod(policy), run(*containers)) == expected


def test_two_containers_one_running_one_done_is_running():
    p = pod("Never", containers=("a", "b"))
    assert phase(p, run(running("a"), done("b", 0))) == "Running"
    assert phase(p, run(done("a", 0), done("b", 2))) == "Failed"


def test_init_containers_gate_the_pod():
    p = pod("Never", init=("setup",))
    assert phase(p, run(init=[running("setup")])) == "Pending"
    assert phase(p, run(init=[done("setup", 1)])) == "Failed"
    assert phase(pod("OnFailure", init=("setup",)), run(init=[done("setup", 1)])) == "Pending"
    assert phase(p, run(running("main"), init=[done("setup", 0)])) == "Running"


def test_no_backend_record_is_pending():
    assert phase(pod(), None) == "Pending"


def test_status_of_a_finished_pod():
    status = pod_status(pod(), Observation(run=run(done("main", 3)), node_ip="10.1.1.1"), NOW)
    assert status["phase"] == "Failed"
    main = status["containerStatuses"][0]
    assert main["state"]["terminated"]["exitCode"] == 3
    assert main["state"]["terminated"]["reason"] == "Error"
    assert main["ready"] is False
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "False"
    # A failed pod's, as generateContainersReadyConditionForTerminalPhase says (a
    # succeeded pod's is PodCompleted).
    assert conditions["Ready"]["reason"] == "PodFailed"
    assert conditions["PodScheduled"]["lastTransitionTime"] == "2026-11-25T11:00:00Z"
    assert status["hostIP"] == "10.1.1.1"


def test_waiting_containers_show_why():
    seen = Observation(waiting=Waiting("ErrImagePull", "no such image"))
    status = pod_status(pod(init=("i",)), seen, NOW)
    assert status["initContainerStatuses"][0]["state"] == {
        "waiting": {"reason": "ErrImagePull", "message": "no such image"}
    }
    assert status["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}


def test_failure_makes_the_pod_failed_with_reason():
    seen = Observation(
        failure=("UnsupportedPodSpec", "container main: readiness probes are not supported")
    )
    status = pod_status(pod(), seen, NOW)
    assert status["phase"] == "Failed"
    assert status["reason"] == "UnsupportedPodSpec"
    assert "readiness probes" in status["message"]


def test_unchanged_status_is_not_rewritten_but_a_change_is():
    seen = Observation(run=run(running("main")), node_ip="10.1.1.1")
    first = pod_status(pod(), seen, NOW)
    later = pod_status({**pod(), "status": first}, seen, datetime(2026, 11, 25, 12, 5, tzinfo=UTC))
    assert same_status(first, later)
    finished = pod_status({**pod(), "status": first}, Observation(run=run(done("main", 0))), NOW)
    assert not same_status(first, finished)


def test_transition_times_are_kept_while_a_condition_holds():
    seen = Observation(run=run(running("main")))
    first = pod_status(pod(), seen, NOW)
    later = pod_status({**pod(), "status": first}, seen, datetime(2026, 11, 25, 13, 0, tzinfo=UTC))
    ready = {c["type"]: c for c in later["conditions"]}["Ready"]
    assert ready["lastTransitionTime"] == "2026-11-25T12:00:00Z"


def conditions_of(status):
    return {
        c["type"]: (c["status"], c.get("reason", ""), c.get("message", ""))
        for c in status["conditions"]
    }


def test_init_containers_as_the_kubelet_reports_them():
    """pkg/kubelet/kubelet_pods.go (convertToAPIContainerStatuses) and
    pkg/kubelet/status/generate.go."""
    p = pod(init=("fetch", "setup"))
    seen = Observation(run=run(init=[done("fetch", 0), running("setup")]), node_ip="10.1.1.1")
    status = pod_status(p, seen, NOW)
    fetch, setup = status["initContainerStatuses"]
    assert fetch["ready"] is True and fetch["state"]["terminated"]["exitCode"] == 0
    assert setup["ready"] is False and "running" in setup["state"]
    (main,) = status["containerStatuses"]
    assert main["state"] == {"waiting": {"reason": "PodInitializing"}}
    conditions = conditions_of(status)
    assert conditions["Initialized"] == (
        "False",
        "ContainersNotInitialized",
        "containers with incomplete status: [setup]",
    )
    assert conditions["Ready"] == (
        "False",
        "ContainersNotReady",
        "containers with unready status: [main]",
    )
    assert conditions["ContainersReady"] == conditions["Ready"]


def test_init_containers_not_started_wait_as_pod_initializing():
    status = pod_status(pod(init=("fetch",)), Observation(run=run()), NOW)
    assert status["initContainerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
    assert conditions_of(status)["Initialized"][2] == "containers with incomplete status: [fetch]"
    # Without init containers, containers not created yet wait as ContainerCreating.
    plain = pod_status(pod(), Observation(run=run()), NOW)
    assert plain["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}


def test_a_succeeded_pod_is_initialized_and_completed():
    p = pod(init=("fetch",))
    status = pod_status(p, Observation(run=run(done("main", 0), init=[done("fetch", 0)])), NOW)
    assert status["phase"] == "Succeeded"
    conditions = conditions_of(status)
    assert conditions["Initialized"] == ("True", "PodCompleted", "")
    assert conditions["Ready"] == ("False", "PodCompleted", "")
    assert status["initContainerStatuses"][0]["ready"] is True


def gated(*conditions):
    """A running pod with readiness gates, holding other writers' ``conditions``."""
    spec = pod()
    spec["spec"]["readinessGates"] = [
        {"conditionType": "example.com/lb"},
        {"conditionType": "example.com/warm"},
    ]
    spec["status"]["conditions"] += [
        {"type": kind, "status": value, "lastTransitionTime": "2026-11-25T11:30:00Z"}
        for kind, value in conditions
    ]
    return spec


def test_readiness_gates_hold_ready_back_as_generate_go_says():
    seen = Observation(run=run(running("main")))
    missing = conditions_of(pod_status(gated(("example.com/lb", "False")), seen, NOW))
    assert missing["ContainersReady"] == ("True", "", "")
    assert missing["Ready"] == (
        "False",
        "ReadinessGatesNotReady",
        'the status of pod readiness gate "example.com/lb" is not "True", but False, '
        'corresponding condition of pod readiness gate "example.com/warm" does not exist.',
    )
    both = gated(("example.com/lb", "True"), ("example.com/warm", "True"))
    assert conditions_of(pod_status(both, seen, NOW))["Ready"] == ("True", "", "")


def test_conditions_of_other_writers_are_written_back_unchanged():
    """The status goes out as a merge patch, which replaces the whole list."""
    spec = gated(("example.com/lb", "True"), ("DisruptionTarget", "False"))
    written = pod_status(spec, Observation(run=run(running("main"))), NOW)["conditions"]
    others = [c for c in written if c["type"] in ("example.com/lb", "DisruptionTarget")]
    assert others == spec["status"]["conditions"][1:]
    assert len({c["type"] for c in written}) == len(written) == 7
