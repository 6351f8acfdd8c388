"""A ready agent configuration for the testbed's HTCondor stand-in, reached over sshd.

`htcondor_agent_config` is what ``.testbed/htcondor.yaml`` holds: ``vkpy run --config
.testbed/htcondor.yaml`` runs a node whose pods are jobs of the stand-in
(`vkpy.testing.condor_standin`) on the login node, as the testbed's login user, with
containers under the user's rootless Podman. No HTCondor pool runs here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from vkpy.backends.htcondor import queue
from vkpy.backends.htcondor.backend import HTCondorBackend
from vkpy.backends.htcondor.build import build_htcondor_backend
from vkpy.backends.htcondor.config import HTCondorConfig
from vkpy.testing.jobnode import started_node
from vkpy.testing.slurm_config import ssh_section
from vkpy.testing.sshd import Ssh

NODE_NAME = "vkpy-htcondor"
KUBELET_PORT = 10253  # beside the Podman (10250) and Slurm (10251) nodes
KILL_WAIT_SECONDS = 5


def htcondor_backend_config(ssh: Ssh, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``backend`` section: SSH to the login node, podman; ``overrides`` replace
    whole fields."""
    backend: dict[str, Any] = {
        "kind": "htcondor",
        "ssh": ssh_section(ssh),
        "runtime": "podman",
        "podman_network": "host",
        "work_dir": "vkpy",
        "kill_wait_seconds": KILL_WAIT_SECONDS,
    }
    backend.update(overrides or {})
    HTCondorConfig.model_validate(backend)  # a typo here fails at once, not in the agent
    return backend


def htcondor_agent_config(ssh: Ssh, *, node_name: str = NODE_NAME) -> dict[str, Any]:
    """The whole agent configuration for the testbed's HTCondor stand-in."""
    return {
        "node": {"name": node_name},
        "kubelet_api": {
            "address": "127.0.0.1",
            "port": KUBELET_PORT,
            "health_port": KUBELET_PORT + 1,
            "serving_certificate": "csr",
            "approve_own_csr": True,
        },
        "backend": htcondor_backend_config(ssh),
    }


def htcondor_on_testbed(
    ssh: Ssh, *, node_name: str, overrides: Mapping[str, Any] | None = None
) -> contextlib.AbstractAsyncContextManager[HTCondorBackend]:
    """A started `HTCondorBackend` on the testbed for a node of its own (`started_node`)."""
    config = HTCondorConfig.model_validate(htcondor_backend_config(ssh, overrides))
    return started_node(build_htcondor_backend(config, node_name=node_name), queued_jobs)


async def queued_jobs(backend: HTCondorBackend) -> list[str]:
    """The node's jobs still in the queue."""
    ads = queue.parse_ads((await backend.runner.run(queue.condor_q_argv(backend.node))).text)
    return [f"job {ad['ClusterId']} (pod uid {ad.get('VkpyPodUID')})" for ad in ads]
