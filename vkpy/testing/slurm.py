"""A real single-node Slurm: munge, slurmctld and slurmd, all with their own config.

Files the unprivileged login user must reach (slurm.conf, the munge socket) live in
a root-owned, world-traversable directory outside the project tree, because the
project may sit under a directory other users cannot enter.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vkpy.testing.errors import TestbedError
from vkpy.testing.processes import Supervisor, port_open

PARTITION = "debug"


@dataclass(frozen=True)
class SlurmPorts:
    slurmctld: int = 26817
    slurmd: int = 26818


@dataclass(frozen=True)
class Slurm:
    conf: Path
    partition: str = PARTITION


def slurm_conf(*, shared: Path, host: str, ports: SlurmPorts, cpus: int, memory_mb: int) -> str:
    """The slurm.conf text; config_overrides lets the node offer more CPUs than it has,
    so many small test jobs run side by side on two cores."""
    return "\n".join(
        [
            "ClusterName=vkpy-testbed",
            f"SlurmctldHost={host}(127.0.0.1)",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"SlurmctldPort={ports.slurmctld}",
            f"SlurmdPort={ports.slurmd}",
            "AuthType=auth/munge",
            f"AuthInfo=socket={shared / 'munge' / 'munge.socket'}",
            f"StateSaveLocation={shared / 'slurm' / 'state'}",
            f"SlurmdSpoolDir={shared / 'slurm' / 'spool'}",
            f"SlurmctldPidFile={shared / 'slurm' / 'slurmctld.pid'}",
            f"SlurmdPidFile={shared / 'slurm' / 'slurmd.pid'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={shared / 'slurm' / 'jobcomp.log'}",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "SchedulerParameters=bf_interval=1",
            "SlurmdParameters=config_overrides",
            "MpiDefault=none",
            "MailProg=/bin/true",
            "ReturnToService=2",
            "MinJobAge=300",
            "KillWait=5",
            "InactiveLimit=0",
            f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
            "",
        ]
    )


def _slurm_env(conf: Path) -> dict[str, str]:
    return {**os.environ, "SLURM_CONF": str(conf)}


def node_idle(conf: Path) -> bool:
    proc = subprocess.run(
        ["sinfo", "-h", "-N", "-o", "%T"], env=_slurm_env(conf), capture_output=True, text=True
    )
    return proc.returncode == 0 and proc.stdout.strip().rstrip("*") in {
        "idle",
        "mixed",
        "allocated",
    }


def _start_munge(shared: Path, supervisor: Supervisor) -> None:
    munge = shared / "munge"
    munge.mkdir(parents=True, exist_ok=True)
    munge.chmod(0o755)  # the login user's clients connect to the socket in here
    key = munge / "munge.key"
    if not key.exists():
        subprocess.run(
            ["mungekey", "--create", f"--keyfile={key}"], check=True, capture_output=True
        )
    key.chmod(0o400)
    sock = munge / "munge.socket"
    supervisor.start(
        "munged",
        [
            "munged",
            "--foreground",
            "--force",
            f"--key-file={key}",
            f"--socket={sock}",
            f"--pid-file={munge / 'munged.pid'}",
            f"--log-file={munge / 'munged.log'}",
            f"--seed-file={munge / 'munged.seed'}",
        ],
    )
    supervisor.wait_until("munged", sock.exists, what="socket")


def up(
    shared: Path, supervisor: Supervisor, ports: SlurmPorts, *, login_uid: int, login_gid: int
) -> Slurm:
    for tool, package in (
        ("munged", "munge"),
        ("slurmctld", "slurmctld"),
        ("slurmd", "slurmd"),
        ("sbatch", "slurm-client"),
    ):
        if shutil.which(tool) is None:
            raise TestbedError(f"{tool} is missing: apt-get install -y {package}")
    shared.mkdir(parents=True, exist_ok=True)
    shared.chmod(0o755)
    _start_munge(shared, supervisor)
    slurm = shared / "slurm"
    for sub in ("state", "spool"):
        (slurm / sub).mkdir(parents=True, exist_ok=True)
    slurm.chmod(0o755)
    conf = slurm / "slurm.conf"
    conf.write_text(
        slurm_conf(
            shared=shared,
            host=socket.gethostname().split(".")[0],
            ports=ports,
            cpus=32,
            memory_mb=16000,
        )
    )
    conf.chmod(0o644)
    # The login user reads finished jobs with `sacct -c`, whose filetxt plugin opens the
    # file for append even to read it, and slurmctld resets its mode to 0644 on start;
    # so the login user owns it (root's slurmctld writes regardless). Real sites have
    # slurmdbd instead.
    jobcomp = slurm / "jobcomp.log"
    jobcomp.touch()
    os.chown(jobcomp, login_uid, login_gid)
    start_controller(supervisor, conf, ports, wait_for_node=False)  # slurmd comes next
    supervisor.start("slurmd", ["slurmd", "-D", "-f", str(conf)], env=_slurm_env(conf))
    supervisor.wait_until("slurmd", lambda: node_idle(conf), what="idle node")
    return Slurm(conf=conf)


def start_controller(
    supervisor: Supervisor, conf: Path, ports: SlurmPorts, *, wait_for_node: bool = True
) -> None:
    """Start slurmctld (a no-op when it runs) and wait until it takes connections and,
    with ``wait_for_node``, knows the running slurmd's node again. Tests stop it with
    ``supervisor.stop("slurmctld")`` and call this to restart it: its state is saved, so
    queued and running jobs survive."""
    supervisor.start("slurmctld", ["slurmctld", "-D", "-f", str(conf)], env=_slurm_env(conf))
    supervisor.wait_until("slurmctld", lambda: port_open(ports.slurmctld), what="port")
    if wait_for_node:
        supervisor.wait_until("slurmctld", lambda: node_idle(conf), what="node known")


def down(supervisor: Supervisor) -> None:
    for name in ("slurmd", "slurmctld", "munged"):
        supervisor.stop(name)
