"""A stand-in for HTCondor's condor_submit, condor_q, condor_history, condor_rm and
condor_ssh_to_job.

No HTCondor pool can run on the test machines, so the testbed's login node gets this
program under those four names. It accepts the commands as the HTCondor backend uses
them and prints HTCondor's documented output formats (JSON ClassAds with HTCondor's
own attribute names), and it really runs each job: the executable with its arguments,
in its initial directory, output and error to the named files, exit code and signal
recorded as HTCondor records them. With ``should_transfer_files = YES`` it runs the job
in a fresh scratch directory (``_CONDOR_SCRATCH_DIR``) holding copies of
``transfer_input_files`` (and of the executable), and copies ``transfer_output_files``
back into the initial directory when the job exits or is removed. condor_rm and
``allowed_job_duration`` vacate a running job as HTCondor's starter does: SIGTERM to its
processes, SIGKILL after ``job_max_vacate_time``. condor_ssh_to_job runs its command
with the login shell, as the job's user, in the job's directory and with the job's
environment, and answers for jobs not running as HTCondor's does. Everything from SSH
to output parsing is thus exercised for real; the pool itself (matchmaking, remote
execution, transfer between machines) is not. Jobs live as JSON files under
``~/.condor-standin``, scratch directories under its ``execute/``.

Only the standard library: it runs with the login node's own ``python3``, with
`condor_syntax` (submit descriptions, constraints) installed beside it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:
    from vkpy.testing.condor_syntax import (
        classad_value,
        constraint,
        expand,
        memory_mb,
        parse_arguments,
        parse_submit,
        queue_items,
    )
except ImportError:  # installed on a login node, beside it, without vkpy
    from condor_syntax import (  # type: ignore[import-not-found,no-redef]
        classad_value,
        constraint,
        expand,
        memory_mb,
        parse_arguments,
        parse_submit,
        queue_items,
    )

STATE = Path.home() / ".condor-standin"
IDLE, RUNNING, REMOVED, COMPLETED, HELD = 1, 2, 3, 4, 5
IN_QUEUE = (IDLE, RUNNING, HELD)
SLOTS = 32  # the pool's job slots: more jobs wait, idle, as in a full pool
ClassAd = dict[str, Any]


def _job_id(ad: ClassAd) -> str:
    return f"{ad['ClusterId']}.{ad['ProcId']}"


def _job_file(job: str) -> Path:
    return STATE / "jobs" / f"{job}.json"


def _load(job: str) -> ClassAd:
    return dict(json.loads(_job_file(job).read_text()))


def _save(ad: ClassAd) -> None:
    path = _job_file(_job_id(ad))
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # each writer its own
    tmp.write_text(json.dumps(ad))
    tmp.replace(path)


@contextlib.contextmanager
def _changing(job: str) -> Iterator[ClassAd]:
    """The job's ad, read, changed by the caller and written back under the job's lock:
    as the schedd serialises changes to a job, the runner and condor_rm never lose each
    other's (a removal written while the runner started the job once left it in the
    queue for good)."""
    with open(STATE / "jobs" / f"{job}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ad = _load(job)
        yield ad
        _save(ad)


def _jobs() -> list[ClassAd]:
    jobs = []
    paths = (STATE / "jobs").glob("*.json")
    for path in sorted(paths, key=lambda p: tuple(map(int, p.stem.split(".")))):
        try:
            jobs.append(json.loads(path.read_text()))
        except (ValueError, FileNotFoundError):
            continue  # being written right now
    return jobs


def _next_cluster() -> int:
    counter = STATE / "next-cluster"
    with open(counter, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        cluster = int(handle.read() or "1")
        handle.seek(0)
        handle.truncate()
        handle.write(str(cluster + 1))
    return cluster


def submit(argv: list[str]) -> int:
    """One cluster, a job for each item of its queue statement: all of them or, if any
    cannot be made, none (as the schedd's transaction)."""
    files = [a for a in argv if not a.startswith("-")]
    text = sys.stdin.read() if not files or files[0] == "-" else Path(files[0]).read_text()
    template, custom = parse_submit(text)
    if "executable" not in template:
        print("ERROR: No 'executable' parameter was provided", file=sys.stderr)
        return 1
    (STATE / "jobs").mkdir(parents=True, exist_ok=True)
    items = queue_items(text)
    cluster = _next_cluster()
    now = int(time.time())
    ads = []
    for proc, item in enumerate(items):
        variables = {**item, "Cluster": str(cluster), "ClusterId": str(cluster)}
        variables |= {"Process": str(proc), "ProcId": str(proc)}
        commands = {k: expand(v, variables) for k, v in template.items()}
        try:
            ad = _job_ad(commands, cluster, proc, now)
        except ValueError as exc:  # nothing is queued
            print(f"\nERROR: on Line 0 of submit file: {exc}", file=sys.stderr)
            return 1
        ad.update({k: classad_value(expand(v, variables)) for k, v in custom.items()})
        ads.append(ad)
    for ad in ads:
        _save(ad)
        _log_event(ad, "000", "Job submitted from host: <127.0.0.1:9618?addrs=127.0.0.1-9618>")
    if ads:
        _detached("__negotiate")
    if "-terse" in argv:
        if ads:
            print(f"{cluster}.0 - {cluster}.{len(ads) - 1}")
    else:
        print("Submitting job(s)" + "." * len(ads))
        print(f"{len(ads)} job(s) submitted to cluster {cluster}.")
    return 0


def _detached(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), *args],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# ---------------------------------------------------------------- the pool


def _waiting() -> list[str]:
    """Idle jobs no runner has taken yet, oldest first."""
    return [
        _job_id(ad)
        for ad in _jobs()
        if ad["JobStatus"] in (IDLE, REMOVED) and not ad.get("StandinTaken")
    ]


def negotiate() -> int:
    """The pool: idle jobs start in the order submitted, at most `SLOTS` at a time, each
    with a runner of its own. One negotiator at a time (a lock); it ends once no job
    waits and none of its runners runs, and a submit starts one again."""
    lock = open(STATE / "negotiator.lock", "a")  # noqa: SIM115 (held until the end)
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # another negotiates; it sees this submit's jobs
        runners: list[subprocess.Popen[bytes]] = []
        while True:
            runners = [r for r in runners if r.poll() is None]
            free = SLOTS - len(runners)
            waiting = _waiting() if free > 0 else []
            for job in waiting[:free]:
                with _changing(job) as ad:
                    ad["StandinTaken"] = True
                runners.append(_detached("__run", job))
            if not waiting and not runners:
                break
            time.sleep(0.2)
        fcntl.flock(lock, fcntl.LOCK_UN)
        if not _waiting():  # a job submitted as the lock went is not left waiting
            return 0


def _job_ad(commands: dict[str, str], cluster: int, proc: int, now: int) -> ClassAd:
    return {
        "ClusterId": cluster,
        "ProcId": proc,
        "GlobalJobId": f"standin#{cluster}.{proc}#{now}",
        "Owner": os.environ.get("USER") or Path.home().name,
        "Cmd": commands["executable"],
        "Args": commands.get("arguments", ""),
        "Iwd": commands.get("initialdir") or os.getcwd(),
        "Out": commands.get("output", "/dev/null"),
        "Err": commands.get("error", "/dev/null"),
        "UserLog": commands.get("log", ""),
        "RequestCpus": int(commands.get("request_cpus", "1")),
        "RequestMemory": memory_mb(commands.get("request_memory", "128")),
        "RequestGpus": int(commands.get("request_gpus", "0")),
        "JobStatus": IDLE,
        "QDate": now,
        "EnteredCurrentStatus": now,
        "JobMaxVacateTime": int(commands.get("job_max_vacate_time", "10")),
        "AllowedJobDuration": int(commands["allowed_job_duration"])
        if "allowed_job_duration" in commands
        else None,
        "ShouldTransferFiles": commands.get("should_transfer_files", "NO").upper(),
        "TransferExecutable": commands.get("transfer_executable", "true").lower() != "false",
        "TransferInput": commands.get("transfer_input_files", ""),
        "TransferOutput": commands.get("transfer_output_files", ""),
    }


# What a terminated event reports after how the job ended (the reader requires it all).
_TERMINATED_USAGE = (
    *(
        f"\tUsr 0 00:00:00, Sys 0 00:00:00  -  {what} Usage"
        for what in ("Run Remote", "Run Local", "Total Remote", "Total Local")
    ),
    *(
        f"0  -  {what} By Job"
        for what in (
            "Run Bytes Sent",
            "Run Bytes Received",
            "Total Bytes Sent",
            "Total Bytes Received",
        )
    ),
)


def _log_event(ad: ClassAd, code: str, headline: str, *body: str) -> None:
    """One event in the job's user log (``log``), in HTCondor's classic format: the
    event number, the job id, the time, the headline, indented details, then "..."."""
    if not ad.get("UserLog"):
        return
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
    job = f"({ad['ClusterId']:03d}.{ad['ProcId']:03d}.000)"
    lines = [f"{code} {job} {when} {headline}", *(f"\t{line}" for line in body), "..."]
    path = Path(ad["Iwd"], ad["UserLog"])
    with contextlib.suppress(OSError), open(path, "a") as log:
        fcntl.flock(log, fcntl.LOCK_EX)
        log.write("\n".join(lines) + "\n")


def _names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


def _copy(source: Path, target: Path) -> None:
    if source.is_dir() and not source.is_symlink():
        shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
    elif source.exists() or source.is_symlink():
        shutil.copy2(source, target, follow_symlinks=False)


def _transfer_in(ad: ClassAd, scratch: Path) -> str:
    """The scratch directory with the job's input; the executable to run there."""
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(mode=0o700, parents=True)
    for name in _names(ad["TransferInput"]):
        source = Path(ad["Iwd"], name)
        _copy(source, scratch / source.name)
    if not ad["TransferExecutable"]:
        return str(ad["Cmd"])
    shutil.copy2(Path(ad["Iwd"], ad["Cmd"]), scratch / "condor_exec.exe")
    return str(scratch / "condor_exec.exe")


def _transfer_out(ad: ClassAd, scratch: Path) -> None:
    """transfer_output_files back into the initial directory; the scratch directory goes."""
    for name in _names(ad["TransferOutput"]):
        _copy(scratch / name, Path(ad["Iwd"], name))
    shutil.rmtree(scratch, ignore_errors=True)


def _vacate(process: subprocess.Popen[bytes], grace: int) -> int:
    """As HTCondor's starter vacates a job: its kill_sig (SIGTERM) to the job's processes,
    then SIGKILL once job_max_vacate_time has passed."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        return process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        return process.wait()


def _supervise(
    process: subprocess.Popen[bytes], job: str, limit: int | None
) -> tuple[int, int | None]:
    """Wait for the job: its exit code, and the allowed duration if it ran past it (the
    job is then vacated and held). condor_rm marks the ad REMOVED; the job is vacated."""
    started = time.monotonic()
    while (code := process.poll()) is None:
        ad = _load(job)
        overdue = limit is not None and time.monotonic() - started > limit
        if ad["JobStatus"] == REMOVED or overdue:
            held = limit if overdue and ad["JobStatus"] != REMOVED else None
            return _vacate(process, int(ad.get("JobMaxVacateTime", 10))), held
        time.sleep(0.2)
    return code, None


def run_job(job: str) -> int:
    time.sleep(0.2)  # matchmaking
    ad = _load(job)
    if ad["JobStatus"] == REMOVED:  # removed while idle: it never runs
        _log_event(ad, "009", "Job was aborted.", ad.get("RemoveReason", ""))
        return 0
    now = int(time.time())
    transfer = ad.get("ShouldTransferFiles") == "YES"
    scratch = STATE / "execute" / f"dir_{job}"
    command = _transfer_in(ad, scratch) if transfer else ad["Cmd"]
    argv = [command, *parse_arguments(ad["Args"])] if ad["Args"] else [command]
    with (
        open(os.path.join(ad["Iwd"], ad["Out"]), "ab") as out,
        open(os.path.join(ad["Iwd"], ad["Err"]), "ab") as err,
    ):
        env = {**os.environ, "_CONDOR_SCRATCH_DIR": str(scratch)} if transfer else dict(os.environ)
        process = subprocess.Popen(
            argv,
            cwd=scratch if transfer else ad["Iwd"],
            env=env,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        host = "<127.0.0.1:9618?addrs=127.0.0.1-9618>"
        _log_event(ad, "001", f"Job executing on host: {host}")
        with _changing(job) as ad:
            if ad["JobStatus"] != REMOVED:  # removed meanwhile: it stays so, and is vacated
                ad.update({"JobStatus": RUNNING, "EnteredCurrentStatus": now})
            ad.update(
                {
                    "JobStartDate": now,
                    "JobCurrentStartDate": now,
                    "RemoteHost": f"slot1@{socket.gethostname()}",
                    "StandinPid": process.pid,
                    "StandinCwd": str(scratch if transfer else ad["Iwd"]),
                    "StandinEnv": env,
                }
            )
        code, held = _supervise(process, job, ad.get("AllowedJobDuration"))
        if held:
            if transfer:  # held: nothing comes back
                shutil.rmtree(scratch, ignore_errors=True)
            _log_event(
                ad,
                "012",
                "Job was held.",
                f"The job exceeded allowed job duration of {held}",
                "Code 46 Subcode 0",
            )
            with _changing(job) as ad:
                ad.update(
                    {
                        "JobStatus": HELD,
                        "EnteredCurrentStatus": int(time.time()),
                        "HoldReason": f"The job exceeded allowed job duration of {held}",
                        "HoldReasonCode": 46,
                        "HoldReasonSubCode": 0,
                    }
                )
            return 0
    if transfer:  # when_to_transfer_output = ON_EXIT_OR_EVICT: on removal too
        _transfer_out(ad, scratch)
    with _changing(job) as ad:
        if ad["JobStatus"] == REMOVED:  # as HTCondor, it leaves the queue once it has exited
            ad["StandinExited"] = True
            _log_event(ad, "009", "Job was aborted.", ad.get("RemoveReason", ""))
            return 0
        finished = int(time.time())
        ad.update(
            {
                "JobStatus": COMPLETED,
                "EnteredCurrentStatus": finished,
                "CompletionDate": finished,
                "ExitBySignal": code < 0,
            }
        )
        if code < 0:
            ad["ExitSignal"] = -code
            ending: tuple[str, ...] = (
                f"(0) Abnormal termination (signal {-code})",
                "(0) No core file",
            )
        else:
            ad["ExitCode"] = code
            ending = (f"(1) Normal termination (return value {code})",)
    _log_event(ad, "005", "Job terminated.", *ending, *_TERMINATED_USAGE)
    return 0


# ---------------------------------------------------------------- queries


def _in_queue(ad: ClassAd) -> bool:
    """Removed jobs stay in the queue until their process has exited."""
    if ad["JobStatus"] == REMOVED:
        return "StandinPid" in ad and not ad.get("StandinExited")
    return ad["JobStatus"] in IN_QUEUE


def _selected(argv: list[str], statuses: tuple[int, ...]) -> list[ClassAd]:
    matches = constraint(argv[argv.index("-constraint") + 1]) if "-constraint" in argv else None
    valued = ("-limit", "-constraint", "-attributes", "-af")
    options = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in valued]
    ids = {a for a in argv if re.fullmatch(r"\d+(\.\d+)?", a) and a not in options}
    chosen = []
    for ad in _jobs():
        if statuses == IN_QUEUE:
            if not _in_queue(ad):
                continue
        elif ad["JobStatus"] not in statuses or _in_queue(ad):
            continue
        if ids and str(ad["ClusterId"]) not in ids and _job_id(ad) not in ids:
            continue
        if matches is not None and not matches(ad):
            continue
        chosen.append(
            {k: v for k, v in ad.items() if v is not None and not k.startswith("Standin")}
        )
    return chosen


def _print_json(ads: list[ClassAd], argv: list[str]) -> None:
    if "-attributes" in argv:
        wanted = set(argv[argv.index("-attributes") + 1].split(","))
        ads = [{k: v for k, v in ad.items() if k in wanted} for ad in ads]
    if ads:  # like HTCondor: no output at all when nothing matches
        print(json.dumps(ads, indent=2))


def query(argv: list[str]) -> int:
    _print_json(_selected(argv, IN_QUEUE), argv)
    return 0


def history(argv: list[str]) -> int:
    ads = sorted(
        _selected(argv, (REMOVED, COMPLETED)), key=lambda a: (-a["ClusterId"], -a["ProcId"])
    )
    if "-limit" in argv:  # the newest N matches, as condor_history reads backwards
        ads = ads[: int(argv[argv.index("-limit") + 1])]
    _print_json(ads, argv)
    return 0


def remove(argv: list[str]) -> int:
    targets = [ad for ad in _selected(argv, IN_QUEUE) if ad["JobStatus"] != REMOVED]
    if not targets:
        what = " ".join(a for a in argv if not a.startswith("-"))
        print(f"Couldn't find/remove all jobs matching constraint {what}", file=sys.stderr)
        return 1
    for target in targets:
        with _changing(_job_id(target)) as ad:
            if ad["JobStatus"] == HELD:  # vacated when it was held: no process to wait for
                ad["StandinExited"] = True
                _log_event(ad, "009", "Job was aborted.", f"via condor_rm (by user {ad['Owner']})")
            ad.update(
                {
                    "JobStatus": REMOVED,
                    "EnteredCurrentStatus": int(time.time()),
                    "RemoveReason": f"via condor_rm (by user {ad['Owner']})",
                }
            )  # the job's runner sees it and vacates the job
        print(f"All jobs in cluster {ad['ClusterId']} have been marked for removal")
    return 0


# ---------------------------------------------------------------- condor_ssh_to_job

_VALUED = ("-ssh", "-name", "-pool", "-shells", "-keygen-options")
_FLAGS = ("-debug", "-auto-retry", "-remove-on-interrupt", "-X", "-x")


def _ssh_to_job_args(argv: list[str]) -> tuple[str, list[str]] | int:
    """(the -ssh command, the rest) as condor_ssh_to_job parses them; else its exit code."""
    ssh, args = "ssh", list(argv)
    while args and args[0].startswith("-"):
        flag = args.pop(0)
        if flag == "--":
            break
        if flag in _VALUED:
            if not args:
                print(f"{flag} requires an argument", file=sys.stderr, end="")
                return 2
            value = args.pop(0)
            ssh = value if flag == "-ssh" else ssh
        elif flag not in _FLAGS:
            print(f"Unrecognized argument: {flag}", file=sys.stderr)
            return 2
    if not args:
        print("ERROR: You must specify a job!\n", file=sys.stderr)
        return 2
    return ssh, args


def ssh_to_job(argv: list[str]) -> int:
    parsed = _ssh_to_job_args(argv)
    if isinstance(parsed, int):
        return parsed
    ssh, args = parsed
    job = re.fullmatch(r"(\d+)(?:\.(\d+))?", args[0])
    if job is None:
        print(f"Invalid job id: {args[0]}", file=sys.stderr)
        return 2
    try:
        ad = _load(f"{job.group(1)}.{int(job.group(2) or 0)}")
    except FileNotFoundError:
        ad = None
    if ad is None or not _in_queue(ad):
        print("Unable to fetch job ad; is it still in the queue?", file=sys.stderr)
        return 1
    if ad["JobStatus"] == HELD:
        print(f'The job is on hold: "{ad.get("HoldReason", "")}".', file=sys.stderr)
        return 1
    if ad["JobStatus"] != RUNNING or "StandinCwd" not in ad:
        # The schedd's answer for a job not running is one a retry may change: said
        # only with -debug, as HTCondor does.
        print("(Use -auto-retry to keep trying periodically.)", file=sys.stderr)
        return 1
    if "-t" in ssh.split()[1:] and not os.isatty(0):
        print(
            "Pseudo-terminal will not be allocated because stdin is not a terminal.",
            file=sys.stderr,
        )
    shell = pwd.getpwuid(os.getuid()).pw_shell or "/bin/sh"
    command = [shell, "-c", " ".join(args[1:])] if args[1:] else [shell, "-l"]
    code = subprocess.call(command, cwd=ad["StandinCwd"], env=ad["StandinEnv"])
    return code if code >= 0 else 255  # ssh's answer for a command killed by a signal


COMMANDS = {
    "condor_submit": submit,
    "condor_q": query,
    "condor_history": history,
    "condor_rm": remove,
    "condor_ssh_to_job": ssh_to_job,
}


def main(argv: list[str]) -> int:
    if len(argv) > 2 and argv[1] == "__run":
        return run_job(argv[2])
    if len(argv) > 1 and argv[1] == "__negotiate":
        return negotiate()
    name = Path(argv[0]).name
    if name not in COMMANDS:
        print(f"standin: call me as one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    STATE.mkdir(parents=True, exist_ok=True)
    return COMMANDS[name](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
