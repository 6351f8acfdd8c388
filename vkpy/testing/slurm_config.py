"""A ready agent configuration for the testbed's Slurm, reached over its sshd.

`slurm_agent_config` is what ``.testbed/slurm.yaml`` holds: ``vkpy run --config
.testbed/slurm.yaml`` runs a node whose pods are Slurm jobs submitted as the testbed's
login user. Containers run under the user's rootless Podman (the testbed has no
Apptainer); `vkpy.testing.rootless.prepare_login_user` makes that work.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from vkpy.backends.slurm import queue
from vkpy.backends.slurm.backend import SlurmBackend
from vkpy.backends.slurm.build import build_slurm_backend
from vkpy.backends.slurm.config import SlurmConfig
from vkpy.testing.jobnode import started_node
from vkpy.testing.slurm import Slurm
from vkpy.testing.sshd import Ssh

NODE_NAME = "vkpy-slurm"
KUBELET_PORT = 10251  # beside the Podman node's 10250, so both can run at once
KILL_WAIT_SECONDS = 5  # the testbed's slurm.conf KillWait


def ssh_section(ssh: Ssh) -> dict[str, Any]:
    """The ``backend.ssh`` section that reaches the testbed's login node."""
    return {
        "host": ssh.host,
        "port": ssh.port,
        "user": ssh.user,
        "key_files": [str(ssh.client_key)],
        "known_hosts": str(ssh.known_hosts),
    }


def slurm_backend_config(
    ssh: Ssh, slurm: Slurm, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The ``backend`` section: SSH to the login node, podman, the jobcomp file;
    ``overrides`` replace whole fields."""
    backend: dict[str, Any] = {
        "kind": "slurm",
        "ssh": ssh_section(ssh),
        "runtime": "podman",
        "podman_network": "host",
        "work_dir": "vkpy",
        "partition": slurm.partition,
        # No slurmdbd on the testbed: finished jobs are read from the jobcomp file.
        "accounting": "jobcomp",
        "kill_wait_seconds": KILL_WAIT_SECONDS,
    }
    backend.update(overrides or {})
    SlurmConfig.model_validate(backend)  # a typo here fails at once, not in the agent
    return backend


def slurm_agent_config(ssh: Ssh, slurm: Slurm, *, node_name: str = NODE_NAME) -> dict[str, Any]:
    """The whole agent configuration for the testbed's Slurm."""
    return {
        "node": {"name": node_name},
        "kubelet_api": {
            "address": "127.0.0.1",
            "port": KUBELET_PORT,
            "health_port": KUBELET_PORT + 1,  # the Podman node has the default 10248
            "serving_certificate": "csr",
            "approve_own_csr": True,
        },
        "backend": slurm_backend_config(ssh, slurm),
    }


def write_slurm_agent_config(path: Path, ssh: Ssh, slurm: Slurm) -> Path:
    """Write the configuration as YAML to ``path`` (``.testbed/slurm.yaml``)."""
    header = "# Written by `make testbed-up`; use with: vkpy run --config THIS\n"
    path.write_text(header + yaml.safe_dump(slurm_agent_config(ssh, slurm), sort_keys=False))
    return path


def backend_on_testbed(
    ssh: Ssh, slurm: Slurm, *, node_name: str, overrides: Mapping[str, Any] | None = None
) -> contextlib.AbstractAsyncContextManager[SlurmBackend]:
    """A started `SlurmBackend` on the testbed for a node of its own (`started_node`)."""
    config = SlurmConfig.model_validate(slurm_backend_config(ssh, slurm, overrides))
    return started_node(build_slurm_backend(config, node_name=node_name), active_jobs)


async def active_jobs(backend: SlurmBackend) -> list[str]:
    """The node's jobs still queued or running."""
    argv = queue.squeue_argv(active_only=True)
    jobs = queue.parse_squeue((await backend.runner.run(argv)).text, backend.node)
    return [f"job {r.job_id} (pod uid {uid})" for uid, r in jobs.items()]
