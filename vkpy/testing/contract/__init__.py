"""The backend contract: checks every backend passes, whatever it runs pods on.

Each check is a plain async function of a `Harness`, which wraps a started backend,
builds pods on a busybox image, waits on ``list()`` (so it needs no push support),
and deletes every pod it created when it closes. A backend's integration tests run
them all::

    @pytest.mark.parametrize("check", contract.CHECKS, ids=contract.check_id)
    async def test_contract(check, backend):
        async with contract.Harness(backend, traits=..., successor=..., host=...) as h:
            await check(h)

The checks only use the `Backend` and `LogReader` protocols; nothing here knows which
backend it is talking to. Where backends may differ (how fast a deadline bites, whether
logs honour ``since`` yet) the harness's `Traits` say so; the adoption check needs a
``successor`` (a second backend object on the same node) and a `Host` to ask directly.
A failed check raises `ContractFailure` saying what was expected and what the backend
last reported.

Modules: `harness` (the harness, traits and helpers), `checks` (a pod's life),
`logs` (logs and their options), `lifecycle` (deadlines and adoption).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from vkpy.testing.contract.checks import (
    check_create_is_idempotent,
    check_delete_returns_when_gone,
    check_env_and_args_are_intact,
    check_exit_code_is_reported,
    check_files_volume_is_visible,
    check_init_containers_run_first,
    check_pod_runs_to_completion,
)
from vkpy.testing.contract.harness import (
    HOSTILE_VALUES,
    IMAGE,
    ContractFailure,
    Harness,
    Host,
    Traits,
    expect,
)
from vkpy.testing.contract.lifecycle import (
    check_a_new_backend_adopts_the_pods,
    check_deadline_ends_the_pod,
)
from vkpy.testing.contract.logs import check_logs_hold_the_output

Check = Callable[[Harness], Awaitable[None]]

CHECKS: tuple[Check, ...] = (
    check_pod_runs_to_completion,
    check_exit_code_is_reported,
    check_init_containers_run_first,
    check_create_is_idempotent,
    check_delete_returns_when_gone,
    check_env_and_args_are_intact,
    check_files_volume_is_visible,
    check_logs_hold_the_output,
    check_deadline_ends_the_pod,
    check_a_new_backend_adopts_the_pods,
)


def check_id(check: Check) -> str:
    return getattr(check, "__name__", repr(check)).removeprefix("check_")


__all__ = [
    "CHECKS",
    "HOSTILE_VALUES",
    "IMAGE",
    "Check",
    "ContractFailure",
    "Harness",
    "Host",
    "Traits",
    "check_a_new_backend_adopts_the_pods",
    "check_create_is_idempotent",
    "check_deadline_ends_the_pod",
    "check_delete_returns_when_gone",
    "check_env_and_args_are_intact",
    "check_exit_code_is_reported",
    "check_files_volume_is_visible",
    "check_id",
    "check_init_containers_run_first",
    "check_logs_hold_the_output",
    "check_pod_runs_to_completion",
    "expect",
]
