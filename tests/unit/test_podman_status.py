from dataclasses import replace

from vkpy.backend import Running, Terminated, Waiting
from vkpy.backends.podman import observed, status

from .test_podman_observed import T0, at, created, delay, ended, inst, run_of


def test_running_and_completed_containers():
    completed = replace(ended("b", 0, index=1, policy="Never"), image_id="d9" * 32, image="img")
    run = run_of(inst("a"), completed)
    a, b = run.containers
    assert a.state == Running(at(T0 - 10))
    assert isinstance(b.state, Terminated)
    assert (b.state.exit_code, b.state.reason) == (0, "Completed")
    assert b.container_id == "podman://b-0"
    assert (b.image, b.image_id) == ("img", "sha256:" + "d9" * 32)
    assert run.pod_ip == "10.0.0.5" and run.job_id == "vkpy-ns-web-uid1"
    assert run.reason == ""


def test_exit_codes_and_reasons():
    assert status.terminated(ended(code=3)).reason == "Error"
    assert status.terminated(ended(code=0)).reason == "Completed"
    oom = replace(ended(code=137), oom_killed=True)
    assert status.terminated(oom).reason == "OOMKilled"
    # cgroup v1: Podman never says OOMKilled, a memory kill is 137 and Error
    assert status.terminated(ended(code=137)).reason == "Error"


def test_a_start_failure_is_a_start_error():
    failed = observed.with_start_error(created(), "executable not found", at(T0))
    state = status.terminated(failed)
    assert (state.exit_code, state.reason, state.message) == (
        128,
        "StartError",
        "executable not found",
    )
    assert failed.ended


def test_a_container_waiting_to_restart_is_in_crash_loop_back_off():
    run = run_of(ended(code=2, restarts=1), ended(code=2, restarts=0))
    (main,) = run.containers
    assert isinstance(main.state, Waiting) and main.state.reason == "CrashLoopBackOff"
    assert "back-off 20s" in main.state.message
    assert main.last_state == status.terminated(ended(code=2, restarts=1))
    assert main.restart_count == 1


def test_a_restarted_container_reports_the_previous_run_as_last_state():
    run = run_of(inst(restarts=1), ended(code=2, restarts=0))
    (main,) = run.containers
    assert isinstance(main.state, Running)
    assert main.last_state is not None and main.last_state.exit_code == 2
    assert main.restart_count == 1


def test_an_ended_container_that_does_not_restart_is_terminated():
    (main,) = run_of(ended(code=2, policy="Never")).containers
    assert isinstance(main.state, Terminated) and main.last_state is None
    (ok,) = run_of(ended(code=0, policy="OnFailure")).containers
    assert isinstance(ok.state, Terminated)


def test_app_containers_wait_for_the_init_containers():
    run = run_of(inst("setup", init=True), created("main"))
    assert run.init_containers[0].state == Running(at(T0 - 10))
    assert run.containers[0].state == Waiting("PodInitializing")
    done = run_of(ended("setup", init=True), created("main"))
    assert done.containers[0].state == Waiting("ContainerCreating")


def test_a_failed_init_container_under_never_leaves_the_app_initializing():
    run = run_of(ended("setup", 1, init=True, policy="Never"), created("main", policy="Never"))
    assert isinstance(run.init_containers[0].state, Terminated)
    assert run.containers[0].state == Waiting("PodInitializing")


def test_a_failed_init_container_under_on_failure_backs_off():
    run = run_of(ended("setup", 1, init=True), created("main"))
    assert isinstance(run.init_containers[0].state, Waiting)
    assert run.init_containers[0].state.reason == "CrashLoopBackOff"


def test_past_the_deadline_the_pod_is_deadline_exceeded_and_stops_restarting():
    run = run_of(inst(deadline=int(T0) - 1))
    assert run.reason == "DeadlineExceeded" and run.message
    killed = run_of(ended(code=137, deadline=int(T0) - 3, finished=T0 - 2))
    assert killed.reason == "DeadlineExceeded"
    assert isinstance(killed.containers[0].state, Terminated)  # no CrashLoopBackOff


def test_a_pod_that_finished_before_its_deadline_is_not_deadline_exceeded():
    run = run_of(ended(code=0, deadline=int(T0) - 1, finished=T0 - 5, policy="Never"))
    assert run.reason == ""
    before = run_of(inst(deadline=int(T0) + 5))
    assert before.reason == ""


def test_pod_runs_cover_every_pod():
    other = replace(inst(), uid="uid-2", id="x")
    pods = observed.group([inst(), other])
    runs = status.pod_runs(
        pods, now=T0, delay=delay, pod_ips={"uid-2": "10.0.0.9"}, sandbox_errors={"uid-2": "x"}
    )
    assert set(runs) == {"uid-1", "uid-2"}
    assert runs["uid-1"].pod_ip is None and runs["uid-2"].pod_ip == "10.0.0.9"


def test_containers_of_a_pod_whose_sandbox_failed_wait_saying_why():
    (pod,) = observed.group([created("main"), ended("done", 0, index=1)]).values()
    run = status.pod_run(pod, now=T0, delay=delay, sandbox_error="duplicate allocation")
    main, done = run.containers
    assert main.state == Waiting(
        "ContainerCreating", "Failed to create pod sandbox: duplicate allocation"
    )
    assert isinstance(done.state, Terminated)  # what ran keeps its own state
    assert status.pod_run(pod, now=T0, delay=delay).containers[0].state == Waiting(
        "ContainerCreating"
    )
