"""The whole testbed: control plane, Podman, Slurm and a login node, up and down as one.

``up`` is idempotent: what runs already is kept, what is missing is started. It writes
``env.sh`` into the state directory so a shell can ``. .testbed/env.sh`` and then use
kubectl, podman, sinfo and squeue against the testbed.
"""

from __future__ import annotations

import os
import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from vkpy.testing import agenthost, condor, loginns, podman, rootless, slurm, sshd, worker
from vkpy.testing.controlplane import ControlPlane, ControlPlanePorts, ControlPlaneRunner
from vkpy.testing.htcondor_config import htcondor_agent_config
from vkpy.testing.kubebinaries import ensure_binaries
from vkpy.testing.processes import Supervisor
from vkpy.testing.slurm_config import slurm_agent_config
from vkpy.testing.virtualnodes import write_virtual_nodes

SHARED_DIR = Path("/var/lib/vkpy-testbed")
SSH_PORT = 22222


@dataclass(frozen=True)
class Endpoints:
    """Everything a test or an agent needs to reach the running testbed."""

    state: Path
    cluster: ControlPlane
    podman: podman.Podman
    slurm: slurm.Slurm
    ssh: sshd.Ssh
    timings: dict[str, float] = field(default_factory=dict, compare=False)

    def environment(self) -> dict[str, str]:
        return {
            "KUBECONFIG": str(self.cluster.admin_kubeconfig),
            "CONTAINERS_CONF": str(self.podman.containers_conf),
            "SLURM_CONF": str(self.slurm.conf),
            "VKPY_TESTBED": str(self.state),
            "VKPY_TESTBED_SSH": f"{self.ssh.user}@{self.ssh.host}:{self.ssh.port}",
            "VKPY_TESTBED_SSH_KEY": str(self.ssh.client_key),
            "VKPY_TESTBED_KNOWN_HOSTS": str(self.ssh.known_hosts),
            "VKPY_TESTBED_PODMAN_URL": self.podman.url,
        }


def podman_agent_config(endpoints: Endpoints) -> dict[str, object]:
    """A ready agent config for the testbed's Podman: `vkpy run --config .testbed/podman.yaml`."""
    return {
        "node": {"name": "vkpy-podman"},
        "kubelet_api": {
            "address": "127.0.0.1",
            "port": 10250,
            # The testbed's controller-manager signs approved kubelet-serving CSRs with the
            # cluster CA; the admin kubeconfig may approve the agent's own.
            "serving_certificate": "csr",
            "approve_own_csr": True,
        },
        "backend": {
            "kind": "podman",
            "socket": str(endpoints.podman.socket),
            "containers_conf": str(endpoints.podman.containers_conf),
        },
    }


def write_agent_configs(endpoints: Endpoints) -> None:
    """``.testbed/{podman,slurm,htcondor}.yaml``, and the same as VirtualNodes in
    ``.testbed/virtualnodes.yaml``. Each keeps the agent's state (its
    serving certificate above all) under ``.testbed/agent-state``, so a second clone's
    testbed, with a CA of its own, never meets the first one's certificate, and
    ``make clean`` removes it."""
    header = "# Written by `make testbed-up`; use with: vkpy run --config THIS --node-name NAME\n"
    configs = {
        "podman.yaml": podman_agent_config(endpoints),
        "slurm.yaml": slurm_agent_config(endpoints.ssh, endpoints.slurm),
        "htcondor.yaml": htcondor_agent_config(endpoints.ssh),
    }
    for name, config in configs.items():
        config["state_dir"] = str(endpoints.state / "agent-state")
        (endpoints.state / name).write_text(header + yaml.safe_dump(config, sort_keys=False))
    write_virtual_nodes(
        endpoints.state / "virtualnodes.yaml",
        configs,
        key=endpoints.ssh.client_key,
        known_hosts=endpoints.ssh.known_hosts,
    )


def default_state_dir() -> Path:
    return Path(os.environ.get("VKPY_TESTBED_DIR", Path.cwd() / ".testbed")).resolve()


class Testbed:
    __test__ = False  # not a pytest test class

    def __init__(self, state: Path | None = None) -> None:
        self.state = state or default_state_dir()
        self.supervisor = Supervisor(self.state)
        self.control_plane = ControlPlaneRunner(self.state, self.supervisor, ControlPlanePorts())

    def up(self) -> Endpoints:
        self.state.mkdir(parents=True, exist_ok=True)
        self.state.chmod(0o700)
        timings: dict[str, float] = {}
        start = time.monotonic()
        cluster = self.control_plane.up()
        timings["control plane"] = time.monotonic() - start
        mark = time.monotonic()
        pod_runtime = podman.up(self.state, self.supervisor)
        timings["podman"] = time.monotonic() - mark
        mark = time.monotonic()
        login_user = sshd.ensure_user(sshd.LOGIN_USER)
        batch = slurm.up(
            SHARED_DIR,
            self.supervisor,
            slurm.SlurmPorts(),
            login_uid=login_user.pw_uid,
            login_gid=login_user.pw_gid,
        )
        condor_bin = condor.install(SHARED_DIR)
        login = sshd.up(
            self.state, self.supervisor, port=SSH_PORT, slurm_conf=batch.conf, extra_path=condor_bin
        )
        rootless.prepare_login_user(login.user)  # Slurm jobs run containers with it
        timings["slurm+sshd"] = time.monotonic() - mark
        endpoints = Endpoints(self.state, cluster, pod_runtime, batch, login, timings)
        self._write_env(endpoints)
        write_agent_configs(endpoints)
        return endpoints

    def login_namespace(self, endpoints: Endpoints) -> sshd.Ssh:
        """A second way to the login node, through its own network namespace, for tests
        that cut the network to it (`loginns`); `down` removes it."""
        return loginns.up(
            self.state,
            self.supervisor,
            port=endpoints.ssh.port,
            slurm_conf=endpoints.slurm.conf,
            extra_path=condor.bin_dir_of(SHARED_DIR),  # installed by `up`
        )

    def worker(self, endpoints: Endpoints) -> worker.Worker:
        """The worker node with a real kubelet and containerd (`worker`), started on
        demand: only the tests that compare with a real kubelet or run the agent as a
        Deployment need it; `down` stops it."""
        return worker.up(
            self.state,
            self.supervisor,
            endpoints.cluster,
            kubelet=ensure_binaries() / "kubelet",
            podman_env={**os.environ, "CONTAINERS_CONF": str(endpoints.podman.containers_conf)},
            images=(endpoints.podman.image,),
        )

    def _write_env(self, endpoints: Endpoints) -> None:
        lines = [f"export {k}={shlex.quote(v)}" for k, v in endpoints.environment().items()]
        (self.state / "env.sh").write_text(
            "# Written by `make testbed-up`: point kubectl, podman, sinfo at the testbed.\n"
            + "\n".join(lines)
            + "\n"
        )

    def down(self) -> list[str]:
        """Stop every process the testbed started, by PID; return their names."""
        running = self.supervisor.names()
        worker.down(self.state, self.supervisor)
        agenthost.down(self.supervisor)
        loginns.down(self.supervisor)
        sshd.down(self.supervisor)
        slurm.down(self.supervisor)
        podman.down(self.supervisor)
        self.control_plane.down()
        for leftover in self.supervisor.names():  # anything started by a later version
            self.supervisor.stop(leftover)
        return running

    def purge(self) -> list[str]:
        """`down`, then remove what the testbed keeps outside its state directory: the
        shared Slurm and munge directory, and the login user with its home (its rootless
        Podman storage). The Kubernetes binaries' cache stays."""
        stopped = self.down()
        shutil.rmtree(SHARED_DIR, ignore_errors=True)
        sshd.remove_user(sshd.LOGIN_USER)
        return stopped
