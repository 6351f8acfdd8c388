"""The cases: what a kubelet must get right, each in one small pod.

Every namespace the corpus runs in holds a ConfigMap and a Secret named ``present``
(``FIXTURES``); the "missing" cases name objects that do not exist.
"""

from __future__ import annotations

from typing import Any

from vkpy.testing.fidelity.case import Action, Case, Settle, container

FIXTURES: list[dict[str, Any]] = [
    {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "present"},
        "data": {"greeting": "hello", "file": "from a configmap"},
    },
    {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "present"},
        "stringData": {"token": "s3cret"},
    },
]
LONG = "trap 'exit 0' TERM; sleep 3600 & wait"
PULL_FAILURES = ("ErrImagePull", "ImagePullBackOff")


def _main(script: str, **fields: Any) -> list[dict[str, Any]]:
    return [container("main", script, **fields)]


def _env_case(name: str, env: list[Any] | None = None, env_from: list[Any] | None = None) -> Case:
    fields: dict[str, Any] = {}
    if env:
        fields["env"] = env
    if env_from:
        fields["envFrom"] = env_from
    missing = "missing" in name and "optional" not in name
    return Case(
        name,
        _main("exit 0", **fields),
        settle=Settle.WAITING if missing else Settle.TERMINAL,
        reasons=("CreateContainerConfigError",) if missing else (),
    )


def _key_ref(kind: str, name: str, optional: bool) -> dict[str, Any]:
    ref = {"configmap": "configMapKeyRef", "secret": "secretKeyRef"}[kind]
    key = "greeting" if kind == "configmap" else "token"
    return {"name": "V", "valueFrom": {ref: {"name": name, "key": key, "optional": optional}}}


def _from_ref(kind: str, name: str, optional: bool) -> dict[str, Any]:
    ref = {"configmap": "configMapRef", "secret": "secretRef"}[kind]
    return {ref: {"name": name, "optional": optional}}


def _env_cases() -> list[Case]:
    cases = [
        _env_case("env-configmap", [_key_ref("configmap", "present", False)]),
        _env_case("env-secret", [_key_ref("secret", "present", False)]),
    ]
    for kind in ("configmap", "secret"):
        for optional in (False, True):
            suffix = "-optional" if optional else ""
            cases.append(
                _env_case(f"env-{kind}-missing{suffix}", [_key_ref(kind, "absent", optional)])
            )
            cases.append(
                _env_case(
                    f"envfrom-{kind}-missing{suffix}",
                    env_from=[_from_ref(kind, "absent", optional)],
                )
            )
    return cases


def _volume_case(name: str, source: dict[str, Any], settle: Settle) -> Case:
    return Case(
        name,
        _main("ls /v >/dev/null", volumeMounts=[{"name": "v", "mountPath": "/v"}]),
        settle=settle,
        spec={"volumes": [{"name": "v", **source}]},
    )


def _volume_cases() -> list[Case]:
    return [
        _volume_case("volume-configmap-missing", {"configMap": {"name": "absent"}}, Settle.HELD),
        _volume_case("volume-secret-missing", {"secret": {"secretName": "absent"}}, Settle.HELD),
        _volume_case(
            "volume-configmap-optional",
            {"configMap": {"name": "absent", "optional": True}},
            Settle.TERMINAL,
        ),
    ]


def _image_cases() -> list[Case]:
    cases = []
    for policy in ("Always", "IfNotPresent", "Never"):
        reasons = ("ErrImageNeverPull",) if policy == "Never" else PULL_FAILURES
        main = container(
            "main", "exit 0", image="localhost/vkpy-no-such-image:1", imagePullPolicy=policy
        )
        cases.append(
            Case(f"image-missing-{policy.lower()}", [main], Settle.WAITING, reasons=reasons)
        )
    return cases


def _exit_cases() -> list[Case]:
    return [
        Case("exit-0", _main("exit 0")),
        Case("exit-1", _main("exit 1")),
        Case("exit-137", _main("exit 137")),
        # The shell is PID 1 of its container: a kubelet's runtime gives it no init, so
        # its own SIGKILL is ignored and it goes on to exit 3.
        Case("kill-self", _main("kill -KILL $$; exit 3")),
        # With a shared PID namespace the pause process is PID 1, and the kill works.
        Case(
            "kill-self-shared-pid",
            _main("kill -KILL $$; exit 3"),
            spec={"shareProcessNamespace": True},
        ),
        Case("two-containers", [container("a", "exit 0"), container("b", "exit 0")]),
        Case(
            "two-containers-one-fails",
            [container("a", "exit 0"), container("b", "sleep 1; exit 1")],
        ),
        Case(
            "termination-message-file",
            _main("echo bye > /dev/termination-log; exit 3"),
        ),
        Case(
            "termination-fallback-logs",
            _main("echo last words; exit 2", terminationMessagePolicy="FallbackToLogsOnError"),
        ),
        Case(
            "oom",
            _main("head -c 200m /dev/zero | tail", resources={"limits": {"memory": "32Mi"}}),
        ),
    ]


def _init_cases() -> list[Case]:
    return [
        Case("init-ok", _main("exit 0"), init=[container("init", "exit 0")]),
        Case("init-fail-never", _main("exit 0"), init=[container("init", "exit 1")]),
        Case(
            "init-fail-onfailure",
            _main("exit 0"),
            Settle.RESTARTED,
            restart="OnFailure",
            init=[container("init", "exit 1")],
            restarting=True,
        ),
    ]


def _restart_cases() -> list[Case]:
    once = "if [ -f /data/ran ]; then sleep 3600; else touch /data/ran; exit 1; fi"
    return [
        Case("always-exit-1", _main("exit 1"), Settle.RESTARTED, restart="Always", restarting=True),
        Case("always-exit-0", _main("exit 0"), Settle.RESTARTED, restart="Always", restarting=True),
        Case(
            "onfailure-exit-1",
            _main("exit 1"),
            Settle.RESTARTED,
            restart="OnFailure",
            restarting=True,
        ),
        Case("onfailure-exit-0", _main("exit 0"), restart="OnFailure"),
        Case(
            "restart-once",
            _main(once, volumeMounts=[{"name": "data", "mountPath": "/data"}]),
            Settle.RUNNING_AFTER_RESTART,
            restart="Always",
            spec={"volumes": [{"name": "data", "emptyDir": {}}]},
        ),
        Case("deadline", _main(LONG), spec={"activeDeadlineSeconds": 5}),
    ]


def _deletion_cases() -> list[Case]:
    return [
        Case("delete-graceful", _main(LONG), Settle.GONE, action=Action.DELETE),
        Case("delete-forced", _main(LONG), Settle.GONE, action=Action.FORCE_DELETE),
        Case(
            "delete-pending",
            _main("exit 0", env=[_key_ref("configmap", "absent", False)]),
            Settle.GONE,
            action=Action.DELETE_PENDING,
        ),
    ]


def _downward_cases() -> list[Case]:
    field_env = [
        {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
        {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
    ]
    field_check = (
        'test "$NAME" = env-fieldref || exit 11; test -n "$NS" || exit 12; '
        'test -n "$NODE" || exit 13; test -n "$HOST_IP" || exit 14; test "$SA" = default || exit 15'
    )
    resource_env = [
        {
            "name": "MEM",
            "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
        },
        {
            "name": "CPU",
            "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}},
        },
    ]
    resources = {"limits": {"memory": "64Mi", "cpu": "500m"}, "requests": {"cpu": "250m"}}
    mounted = "/var/run/secrets/kubernetes.io/serviceaccount"
    token_check = (
        f"test -s {mounted}/token && test -s {mounted}/ca.crt && test -s {mounted}/namespace"
    )
    return [
        Case("env-fieldref", _main(field_check, env=field_env)),
        Case(
            "env-resourcefieldref",
            _main(
                'test "$MEM" = 64 || exit 11; test "$CPU" = 250 || exit 12',
                env=resource_env,
                resources=resources,
            ),
        ),
        Case("projected-token", _main(token_check)),
        Case(
            "subpath",
            _main(
                'test "$(cat /etc/app/file.txt)" = "from a configmap"',
                volumeMounts=[{"name": "cfg", "mountPath": "/etc/app/file.txt", "subPath": "file"}],
            ),
            spec={"volumes": [{"name": "cfg", "configMap": {"name": "present"}}]},
        ),
        Case(
            "readonly-mount",
            _main(
                "if touch /ro/x 2>/dev/null; then exit 1; fi; touch /rw/x",
                volumeMounts=[
                    {"name": "data", "mountPath": "/ro", "readOnly": True},
                    {"name": "data", "mountPath": "/rw"},
                ],
            ),
            spec={"volumes": [{"name": "data", "emptyDir": {}}]},
        ),
        Case(
            "secret-volume",
            _main(
                'test "$(cat /s/token)" = s3cret',
                volumeMounts=[{"name": "s", "mountPath": "/s", "readOnly": True}],
            ),
            spec={"volumes": [{"name": "s", "secret": {"secretName": "present"}}]},
        ),
    ]


CASES: list[Case] = [
    *_exit_cases(),
    *_init_cases(),
    *_restart_cases(),
    *_env_cases(),
    *_volume_cases(),
    *_image_cases(),
    *_deletion_cases(),
    *_downward_cases(),
]
