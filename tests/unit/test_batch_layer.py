"""The batch layer's seams: what each import loads, the shared config fields, and
HTCondor's capacity."""

import subprocess
import sys

import pytest

from vkpy.backends.batch.config import BatchConfig
from vkpy.backends.htcondor.backend import HTCondorBackend
from vkpy.backends.htcondor.build import build_htcondor_backend
from vkpy.backends.htcondor.config import HTCondorConfig
from vkpy.backends.slurm.config import SlurmConfig
from vkpy.config import Settings


def loaded_after(statement: str) -> set[str]:
    """The vkpy modules a fresh interpreter has loaded after ``statement``."""
    code = (
        f"import sys\n{statement}\nprint(' '.join(m for m in sys.modules if m.startswith('vkpy')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(done.stdout.split())


def test_the_configuration_loads_no_backend():
    loaded = loaded_after("import vkpy.config")
    backends = {m for m in loaded if m.startswith("vkpy.backends.")}
    # Packages (docstrings only), config models, and the submit-command check they use.
    allowed = {m for m in backends if m.endswith(".config") or m.count(".") == 2}
    assert backends - allowed == {"vkpy.backends.htcondor.commands"}, backends


def test_htcondor_does_not_load_the_slurm_backend():
    loaded = loaded_after("import vkpy.backends.htcondor.build")
    assert not {m for m in loaded if m.startswith("vkpy.backends.slurm")}, loaded


def test_the_batch_fields_are_declared_once():
    shared = {"kill_wait_seconds", "command_timeout_seconds", "delete_timeout_seconds"}
    shared |= {"work_dir_retention_seconds", "max_pods"}
    assert shared <= set(BatchConfig.model_fields)
    for model in (SlurmConfig, HTCondorConfig):
        assert shared <= set(model.model_fields)
        assert not shared & set(model.__annotations__), model
    settings = Settings(backend={"kind": "htcondor", "max_pods": 7})  # type: ignore[arg-type]
    assert isinstance(settings.backend, HTCondorConfig) and settings.backend.max_pods == 7


@pytest.mark.parametrize(
    ("offered", "expected"),
    [
        ({"cpu": "8", "memory": "32Gi", "pods": "110"}, (8000, 32 * 2**30, 7)),
        ({"cpu": "500m", "memory": "1G"}, (500, 10**9, 7)),
        ({"pods": "3"}, None),
        (None, None),
    ],
)
async def test_htcondor_offers_the_nodes_capacity_with_max_pods(offered, expected):
    config = HTCondorConfig.model_validate({"runtime": "podman", "max_pods": 7})
    backend = build_htcondor_backend(config, node_name="n", offered=offered)
    assert isinstance(backend, HTCondorBackend)
    capacity = await backend.capacity()
    got = None if capacity is None else (capacity.cpu_millis, capacity.memory_bytes, capacity.pods)
    assert got == expected
