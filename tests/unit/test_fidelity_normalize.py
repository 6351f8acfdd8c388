from vkpy.testing.fidelity.normalize import differences, event_reasons, normalize, summary
from vkpy.testing.fidelity.report import Row, counts, problems, render_table


def pod(container_state, *, restarts=0, last=None, phase="Running"):
    return {
        "status": {
            "phase": phase,
            "podIP": "10.244.0.9",
            "hostIP": "10.244.0.1",
            "startTime": "2026-12-04T18:00:00Z",
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "ContainersNotReady"},
                {"type": "PodScheduled", "status": "True"},
            ],
            "containerStatuses": [
                {
                    "name": "main",
                    "state": container_state,
                    "lastState": last or {},
                    "restartCount": restarts,
                    "ready": False,
                    "containerID": "containerd://abc",
                    "imageID": "sha256:def",
                }
            ],
        }
    }


def test_times_ips_and_ids_are_reduced_to_whether_they_are_set():
    flat = normalize(pod({"running": {"startedAt": "2026-12-04T18:00:01Z"}}), [])
    assert flat["podIP"] is True and flat["startTime"] is True
    assert flat["containers.main.containerID"] is True
    assert flat["containers.main.state.kind"] == "running"
    assert flat["conditions.Ready"] == "False ContainersNotReady"
    assert flat["conditions.PodScheduled"] == "True"
    assert flat["conditions.Initialized"] is None


def test_a_crash_looping_container_normalizes_the_same_at_any_instant():
    last = {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "x"}}
    snapshots = [
        pod({"waiting": {"reason": "CrashLoopBackOff"}}, restarts=1, last=last),
        pod({"running": {"startedAt": "y"}}, restarts=2, last=last),
        pod({"terminated": {"exitCode": 1, "reason": "Error"}}, restarts=3, last=last),
    ]
    flats = [normalize(p, [], restarting=True) for p in snapshots]
    assert flats[0] == flats[1] == flats[2]
    assert flats[0]["containers.main.lastState"] == {
        "kind": "terminated",
        "reason": "Error",
        "exitCode": 1,
    }


def test_the_two_pull_failure_reasons_a_kubelet_alternates_between_are_one():
    a = normalize(pod({"waiting": {"reason": "ErrImagePull"}}), [])
    b = normalize(pod({"waiting": {"reason": "ImagePullBackOff"}}), [])
    assert differences(a, b) == []


def test_the_schedulers_events_are_not_the_nodes():
    events = [
        {"type": "Normal", "reason": "Scheduled", "source": {"component": "default-scheduler"}},
        {"type": "Normal", "reason": "Pulled", "source": {"component": "kubelet"}},
        {"type": "Normal", "reason": "Pulled", "source": {"component": "kubelet"}},
        {"type": "Warning", "reason": "Failed", "reportingComponent": "kubelet"},
    ]
    assert event_reasons(events) == ["Normal Pulled", "Warning Failed"]


def test_a_kubelets_not_registered_race_is_not_a_failed_mount():
    race = 'MountVolume.SetUp failed for volume "cm" : object "ns"/"absent" not registered'
    missing = 'MountVolume.SetUp failed for volume "cm" : configmap "absent" not found'
    events = [{"type": "Warning", "reason": "FailedMount", "message": race}]
    assert event_reasons(events) == []
    events.append({"type": "Warning", "reason": "FailedMount", "message": missing})
    assert event_reasons(events) == ["Warning FailedMount"]


def test_differences_name_fields_and_each_event_one_side_lacks():
    real = normalize(
        pod({"terminated": {"exitCode": 0, "reason": "Completed"}}),
        [{"type": "Normal", "reason": "Started"}],
    )
    ours = normalize(pod({"terminated": {"exitCode": 137, "reason": "Error"}}), [])
    assert differences(real, ours) == [
        "containers.main.state.exitCode",
        "containers.main.state.reason",
        "events[Normal Started]",
    ]


def test_the_report_marks_unlisted_differences_new_and_only_those_fail():
    same = normalize(pod({"running": {}}), [])
    other = normalize(pod({"running": {}}, restarts=1), [])
    rows = [Row("alike", same, same), Row("unlisted-case", same, other)]
    assert counts(rows) == {"yes": 1, "known": 0, "NEW": 1}
    assert problems(rows) == ["unlisted-case: differs, unlisted, in containers.main.restartCount"]
    table = render_table(rows, candidate="vkpy")
    assert "| alike | Running; main: running | Running; main: running | yes | - |" in table


def test_a_deleted_pod_summarizes_as_deleted():
    assert summary(normalize(None, [])) == "deleted"
