from vkpy.pods.announce import container_events


def status(name="main", state=None, restarts=0, last=None):
    return {
        "name": name,
        "image": "localhost/busybox:latest",
        "state": state or {"waiting": {"reason": "ContainerCreating"}},
        "restartCount": restarts,
        "lastState": last or {},
    }


def reasons(events):
    return [event[1] for _, event in events]


def test_a_waiting_container_has_no_events_yet():
    assert container_events([status()]) == []


def test_a_run_seen_only_after_it_ended_still_gets_pulled_created_started_in_order():
    events = container_events([status(state={"terminated": {"exitCode": 0}})])
    assert reasons(events) == ["Pulled", "Created", "Started"]
    assert 'image "localhost/busybox:latest" already present' in events[0][1][2]


def test_each_run_is_its_own_key_so_a_restart_announces_again():
    first = {key for key, _ in container_events([status(state={"running": {}})])}
    again = container_events(
        [status(state={"running": {}}, restarts=1, last={"terminated": {"exitCode": 1}})]
    )
    assert first <= {key for key, _ in again}
    assert len({key for key, _ in again} - first) == 3


def test_a_crash_loop_backs_off_once_per_restart():
    waiting = {"waiting": {"reason": "CrashLoopBackOff"}}
    events = container_events(
        [status(state=waiting, restarts=2, last={"terminated": {"exitCode": 1}})]
    )
    assert reasons(events) == ["Pulled", "Created", "Started", "BackOff"]
    assert events[-1][0] == "backoff/main/2"
