from dataclasses import replace

from vkpy.backends.podman import observed, progress
from vkpy.backends.podman.observed import Instance

from .test_podman_observed import T0, at, created, delay, ended, inst


def plan_of(*instances: Instance, now: float = T0) -> progress.Plan:
    (pod,) = observed.group(instances).values()
    return progress.plan(pod, now=now, delay=delay)


def test_a_new_pod_starts_its_first_init_container_only():
    first = created("one", init=True, index=0)
    plan = plan_of(first, created("two", init=True, index=1), created("main"))
    assert plan.start == (first,)
    assert not plan.restart and not plan.stop_all


def test_the_next_init_container_starts_once_the_previous_succeeded():
    second = created("two", init=True, index=1)
    plan = plan_of(ended("one", 0, init=True, index=0), second, created("main"))
    assert plan.start == (second,)


def test_nothing_starts_while_an_init_container_runs():
    plan = plan_of(inst("one", init=True), created("main"))
    assert not plan.immediate and plan.wake_at is None


def test_app_containers_start_together_after_the_init_containers():
    a, b = created("a", index=0), created("b", index=1)
    plan = plan_of(ended("one", 0, init=True), a, b)
    assert plan.start == (a, b)


def test_without_init_containers_the_app_containers_start_at_once():
    a = created("a")
    assert plan_of(a).start == (a,)


def test_a_failed_init_container_under_never_ends_everything():
    plan = plan_of(ended("one", 1, init=True, policy="Never"), created("main", policy="Never"))
    assert not plan.immediate and plan.wake_at is None


def test_a_failed_init_container_restarts_after_its_back_off():
    failed = ended("one", 1, init=True, finished=T0 - 3)
    waiting = plan_of(failed, created("main"))
    assert not waiting.immediate
    assert waiting.wake_at == T0 - 3 + delay(0)
    due = plan_of(failed, created("main"), now=T0 - 3 + delay(0))
    assert [h.name for h in due.restart] == ["one"]


def test_app_containers_restart_per_policy_after_the_back_off():
    crashed = ended("main", 2, restarts=2, finished=T0 - 1)
    assert plan_of(crashed).wake_at == T0 - 1 + delay(2)
    assert plan_of(crashed, now=T0 + 60).restart[0].current == crashed
    assert not plan_of(ended("main", 0, policy="OnFailure")).immediate
    assert plan_of(ended("main", 0, policy="Always"), now=T0 + 60).restart
    assert not plan_of(ended("main", 1, policy="Never"), now=T0 + 60).immediate


def test_a_restart_removes_the_run_before_the_previous_one():
    oldest = ended("main", 1, restarts=0)
    previous = ended("main", 1, restarts=1, finished=T0 - 100)
    plan = plan_of(previous, oldest, now=T0)
    assert plan.restart and plan.remove == (oldest,)
    leftover = plan_of(inst(restarts=3), ended(restarts=2), ended(restarts=1), ended(restarts=0))
    assert {i.restart_count for i in leftover.remove} == {0, 1}


def test_past_the_deadline_everything_stops_and_nothing_restarts():
    running = plan_of(inst(deadline=int(T0) - 1))
    assert running.stop_all and not running.start and not running.restart
    stopped = plan_of(ended(code=137, deadline=int(T0) - 2, finished=T0 - 1), now=T0 + 100)
    assert not stopped.immediate and stopped.wake_at is None


def test_before_the_deadline_the_pod_wakes_up_for_it():
    plan = plan_of(inst(deadline=int(T0) + 30))
    assert plan.wake_at == T0 + 30 and not plan.immediate
    crashed = ended(code=1, deadline=int(T0) + 5, finished=T0 - 1)
    assert plan_of(crashed).wake_at == T0 + 5  # the deadline comes before the back-off ends


def test_a_finished_pod_needs_no_deadline_wake_up():
    done = replace(ended(code=0, policy="Never"), deadline=int(T0) + 30)
    assert plan_of(done).wake_at is None


def test_a_container_that_could_not_start_is_not_started_again_at_once():
    failed = observed.with_start_error(created(policy="Never"), "no such file", at(T0))
    assert not plan_of(failed).immediate


def test_a_pod_created_half_way_never_starts():
    plan = plan_of(created("one", init=True, expected=3), created("main", expected=3))
    assert not plan.immediate and plan.wake_at is None
