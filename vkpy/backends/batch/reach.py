"""Reaching into a pod's job for exec, attach and port-forward: where it runs, and the
commands that run there. Pure.

One remote command (`probe_argv`) reads what the job script recorded (the pod's
containers, the container's last run) and asks the batch system where the job is (a
shell snippet each system gives, run with the job id in ``$job``); `target` decides
from that whether there is anything to reach, and raises the error the caller gets
otherwise. What runs on the node is the runtime's own exec or attach (`exec_argv`,
`attach_argv`), tagged with a random mark in its environment, so that `kill_argv`
finds every process of the session on the node, the ones inside the container
included: neither the end of ``podman exec``'s client nor a job's end stops a process
that Podman's conmon holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from vkpy.backends.batch import naming, records
from vkpy.backends.batch.records import PodMeta
from vkpy.backends.batch.runtime import RuntimeOptions, podman_container_name
from vkpy.errors import ContainerNotRunning, PodNotFound, PodRejected, StreamingUnsupported

MARK = "VKPY_SESSION"  # NAME=<tag> in the environment of every process of a session

# Prints "@meta", "@job", "@run", "@jobid <id>" and "@queue" sections; exits 3 when the
# pod has no work directory. {where} is the system's question, with the job id in "$job".
PROBE = (
    'dir=$1; c=$2; [ -d "$dir/status" ] || exit 3; '
    'echo @meta; head -n 1 "$dir/status/_pod" 2> /dev/null; '
    'echo @run; [ -z "$c" ] || tail -n 1 "$dir/status/$c" 2> /dev/null; '
    'job=$(cat "$dir/status/_jobid" 2> /dev/null); echo "@jobid $job"; '
    'echo @queue; [ -z "$job" ] || {{ {where}; }}'
)

# Kills every process whose environment holds MARK=<tag> ($1), a few rounds, for
# processes forked while the first ones died.
KILL = (
    f'tag="{MARK}=$1"; for round in 1 2 3 4 5; do found=""; '
    'for f in $(grep -l -z -x -F -e "$tag" /proc/[0-9]*/environ 2> /dev/null); do '
    'p=${f#/proc/}; kill -KILL "${p%/environ}" 2> /dev/null && found=1; done; '
    '[ -n "$found" ] || exit 0; sleep 0.1; done'
)


# The job script records a run's start just before `podman run`: a session opened soon
# after (`FRESH_SECONDS`) waits (up to 10 s) until Podman says the container runs, then
# becomes the client. Later ones go straight to the client, saving a Podman call.
FRESH_SECONDS = 15
RUNNING_FIRST = (
    'runtime=$1; name=$2; shift 2; i=0; while [ "$i" -lt 50 ] && [ "$("$runtime" container '
    'inspect --format \'{{.State.Status}}\' "$name" 2> /dev/null)" != running ]; do '
    'sleep 0.2; i=$((i + 1)); done; exec "$@"'
)


@dataclass(frozen=True)
class Placement:
    """Where the batch system says the pod's job is."""

    running: bool
    host: str = ""  # the node it runs on (when running)
    why: str = ""  # when not running: said to the caller


@dataclass(frozen=True)
class Probe:
    """What `probe_argv` printed."""

    meta: PodMeta | None
    run_line: str  # the container's last status line
    job_id: str
    queue: str  # the batch system's answer about the job


@dataclass(frozen=True)
class Target:
    """A running container to reach, and where its job runs."""

    uid: str
    container: str
    job_id: str
    host: str
    run: int  # the container's current run
    shares_network: bool  # the containers use the node's network
    started: int = 0  # epoch second its run started (the node's clock)


def probe_argv(pod_dir: str, container: str, where: str) -> tuple[str, ...]:
    return ("sh", "-c", PROBE.format(where=where), "sh", pod_dir, container)


def parse_probe(text: str) -> Probe:
    sections: dict[str, list[str]] = {"meta": [], "run": [], "queue": []}
    job_id = ""
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("@jobid"):
            job_id, current = line.removeprefix("@jobid").strip(), None
        elif line[1:] in sections and line.startswith("@"):
            current = sections[line[1:]]
        elif current is not None:
            current.append(line)
    meta = PodMeta.from_json(sections["meta"][0]) if sections["meta"] else None
    run = sections["run"][-1].strip() if sections["run"] else ""
    return Probe(meta, run, job_id, "\n".join(sections["queue"]))


def check_names(uid: str, container: str) -> None:
    """PodNotFound for names no pod or container of this node can have."""
    try:
        naming.check_uid(uid)
        if container:
            naming.check_container_name(container)
    except PodRejected as exc:
        raise PodNotFound(str(exc)) from exc


def target(probe: Probe, place: Placement, *, uid: str, container: str, system: str) -> Target:
    """The container to reach; PodNotFound or ContainerNotRunning when there is none."""
    if probe.meta is None:
        raise PodNotFound(f"pod uid {uid} has no {system} job on this node")
    if container and container not in (*probe.meta.init, *probe.meta.containers):
        raise PodNotFound(
            f"pod {probe.meta.namespace}/{probe.meta.name} has no container {container}"
        )
    if not place.running:
        raise ContainerNotRunning(place.why or f"the pod's {system} job does not run")
    run = started = 0
    if container:
        words = probe.run_line.split()
        if not words or words[0] != "start":
            raise ContainerNotRunning(f"container {container} is not running: {_state(words)}")
        started = int(words[1]) if len(words) > 1 and words[1].isdecimal() else 0
        run = int(words[2]) if len(words) > 2 and words[2].isdecimal() else 0
    return Target(uid, container, probe.job_id, place.host, run, probe.meta.reports_ip, started)


def _state(words: list[str]) -> str:
    if not words:
        return "it has not started yet"
    if words[0] == "exit" and len(words) > 1:
        return f"it exited with code {words[1]}"
    if words[0] == "wait":
        return "it waits to be restarted"
    return "its state is unknown"


def exec_argv(
    options: RuntimeOptions,
    uid: str,
    container: str,
    command: tuple[str, ...],
    *,
    stdin: bool,
    tty: bool,
    tag: str,
    fresh: bool = True,
) -> list[str]:
    """``command`` run in the container by its runtime; the client and the process both
    carry the session's mark."""
    if options.kind != "podman":
        raise StreamingUnsupported(
            f"exec is not possible with the {options.kind} runtime: the job script runs "
            "each container as a plain process of the job, not as an instance a command "
            "could join (the podman runtime allows exec)"
        )
    if not command:
        raise StreamingUnsupported("exec needs a command")
    flags = [*(["--interactive"] if stdin else []), *(["--tty"] if tty else [])]
    name = podman_container_name(uid, container)
    client = [options.executable, "exec", *flags, f"--env={MARK}={tag}", name, *command]
    return _marked(options, name, tag, client, fresh=fresh)


def _marked(
    options: RuntimeOptions, name: str, tag: str, client: list[str], *, fresh: bool
) -> list[str]:
    """``client`` with the session's mark, after the container runs if it just started."""
    if not fresh:
        return ["env", f"{MARK}={tag}", *client]
    wait = ["sh", "-c", RUNNING_FIRST, "sh", options.executable, name]
    return ["env", f"{MARK}={tag}", *wait, *client]


def attach_argv(
    options: RuntimeOptions, uid: str, container: str, *, tag: str, fresh: bool = True
) -> list[str]:
    """The container's output as it comes; signals to the client stay with the client."""
    if options.kind != "podman":
        raise StreamingUnsupported(
            f"attach is not possible with the {options.kind} runtime: the container's "
            "output goes only to its log file (kubectl logs -f follows it)"
        )
    name = podman_container_name(uid, container)
    client = [options.executable, "attach", "--no-stdin", "--sig-proxy=false", name]
    return _marked(options, name, tag, client, fresh=fresh)


def kill_argv(tag: str) -> list[str]:
    return ["sh", "-c", KILL, "sh", tag]


def exit_code(lines: list[str], run: int) -> int | None:
    """The exit code the job script recorded for ``run`` of a container."""
    for recorded in records.history(lines).runs:
        if recorded.number == run:
            return recorded.exit_code
    return None
