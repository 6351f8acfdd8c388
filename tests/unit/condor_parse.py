"""A submit description as HTCondor's own parser reads it, for one queued job."""

from typing import Any

import htcondor2


def expanded(text: str) -> dict[str, str]:
    """Every command of ``text`` with the single item's variables substituted, as
    condor_submit would for that job (the raw values keep ``$(pod_uid)``)."""
    submit: Any = htcondor2.Submit(text)
    items = list(submit.itemdata())
    assert len(items) == 1, f"expected one queued job, got {len(items)}"
    for name, value in items[0].items():
        submit[name] = value
    return {key: submit.expand(key) for key in submit}
