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
        memory_mb,
        parse_arguments,
        parse_submit,
    )
except ImportError:  # installed on a login node, beside it, without vkpy
    from condor_syntax import (  # type: ignore[import-not-found,no-redef]
        classad_value,
        constraint,
        memory_mb,
        parse_arguments,
        parse_submit,
    )

STATE = Path.home() / ".condor-standin"
IDLE, RUNNING, REMOVED, COMPLETED, HELD = 1, 2, 3, 4, 5
IN_QUEUE = (IDLE, RUNNING, HELD)
ClassAd = dict[str, Any]


def _job_file(cluster: int) -> Path:
    return STATE / "jobs" / f"{cluster}.json"


def _load(cluster: int) -> ClassAd:
    return dict(json.loads(_job_file(cluster).read_text()))


def _save(ad: ClassAd) -> None:
    path = _job_file(ad["ClusterId"])
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # each writer its own
    tmp.write_text(json.dumps(ad))
    tmp.replace(path)


@contextlib.contextmanager
def _changing(cluster: int) -> Iterator[ClassAd]:
    """The job's ad, read, changed by the caller and written back under the job's lock:
    as the schedd serialises changes to a job, the runner and condor_rm never lose each
    other's (a removal written while the runner started the job once left it in the
    queue for good)."""
    with open(STATE / "jobs" / f"{cluster}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ad = _load(cluster)
        yield ad
        _save(ad)


def _jobs() -> list[ClassAd]:
    jobs = []
    for path in sorted((STATE / "jobs").glob("*.json"), key=lambda p: int(p.stem)):
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
    files = [a for a in argv if not a.startswith("-")]
    text = sys.stdin.read() if not files or files[0] == "-" else Path(files[0]).read_text()
    commands, custom = parse_submit(text)
    if "executable" not in commands:
        print("ERROR: No 'executable' parameter was provided", file=sys.stderr)
        return 1
    (STATE / "jobs").mkdir(parents=True, exist_ok=True)
    cluster = _next_cluster()
    now = int(time.time())
    iwd = commands.get("initialdir") or os.getcwd()
    ad: ClassAd = {
        "ClusterId": cluster,
        "ProcId": 0,
        "GlobalJobId": f"standin#{cluster}.0#{now}",
        "Owner": os.environ.get("USER") or Path.home().name,
        "Cmd": commands["executable"],
        "Args": commands.get("arguments", ""),
        "Iwd": iwd,
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
    ad.update({k: classad_value(v) for k, v in custom.items()})
    _save(ad)
    subprocess.Popen(  # the "pool": a detached runner per job
        [sys.executable, os.path.abspath(__file__), "__run", str(cluster)],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if "-terse" in argv:
        print(f"{cluster}.0 - {cluster}.0")
    else:
        print("Submitting job(s).")
        print(f"1 job(s) submitted to cluster {cluster}.")
    return 0


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
    process: subprocess.Popen[bytes], cluster: int, limit: int | None
) -> tuple[int, int | None]:
    """Wait for the job: its exit code, and the allowed duration if it ran past it (the
    job is then vacated and held). condor_rm marks the ad REMOVED; the job is vacated."""
    started = time.monotonic()
    while (code := process.poll()) is None:
        ad = _load(cluster)
        overdue = limit is not None and time.monotonic() - started > limit
        if ad["JobStatus"] == REMOVED or overdue:
            held = limit if overdue and ad["JobStatus"] != REMOVED else None
            return _vacate(process, int(ad.get("JobMaxVacateTime", 10))), held
        time.sleep(0.2)
    return code, None


def run_job(cluster: int) -> int:
    time.sleep(0.2)  # matchmaking
    ad = _load(cluster)
    if ad["JobStatus"] == REMOVED:  # removed while idle: it never runs
        return 0
    now = int(time.time())
    transfer = ad.get("ShouldTransferFiles") == "YES"
    scratch = STATE / "execute" / f"dir_{cluster}"
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
        with _changing(cluster) as ad:
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
        code, held = _supervise(process, cluster, ad.get("AllowedJobDuration"))
        if held:
            if transfer:  # held: nothing comes back
                shutil.rmtree(scratch, ignore_errors=True)
            with _changing(cluster) as ad:
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
    with _changing(cluster) as ad:
        if ad["JobStatus"] == REMOVED:  # as HTCondor, it leaves the queue once it has exited
            ad["StandinExited"] = True
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
        else:
            ad["ExitCode"] = code
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
    ids = {
        int(a.split(".")[0]) for a in argv if re.fullmatch(r"\d+(\.\d+)?", a) and a not in options
    }
    chosen = []
    for ad in _jobs():
        if statuses == IN_QUEUE:
            if not _in_queue(ad):
                continue
        elif ad["JobStatus"] not in statuses or _in_queue(ad):
            continue
        if ids and ad["ClusterId"] not in ids:
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
    ads = sorted(_selected(argv, (REMOVED, COMPLETED)), key=lambda a: -a["ClusterId"])
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
        with _changing(target["ClusterId"]) as ad:
            if ad["JobStatus"] == HELD:  # vacated when it was held: no process to wait for
                ad["StandinExited"] = True
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
        ad = _load(int(job.group(1)))
    except FileNotFoundError:
        ad = None
    if ad is None or not _in_queue(ad) or int(job.group(2) or 0) != ad["ProcId"]:
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
        return run_job(int(argv[2]))
    name = Path(argv[0]).name
    if name not in COMMANDS:
        print(f"standin: call me as one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    STATE.mkdir(parents=True, exist_ok=True)
    return COMMANDS[name](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
