from vkpy.testing.fidelity.case import Settle
from vkpy.testing.fidelity.corpus import CASES
from vkpy.testing.fidelity.known import CLASSES, KNOWN_DIFFERENCES

NAMES = [case.name for case in CASES]


def test_the_corpus_has_at_least_thirty_distinct_cases():
    assert len(NAMES) >= 30
    assert len(set(NAMES)) == len(NAMES)


def test_the_corpus_covers_what_a_kubelet_must_get_right():
    wanted = {
        "exit-0", "exit-1", "exit-137", "init-ok", "init-fail-never", "init-fail-onfailure",
        "always-exit-1", "onfailure-exit-1", "deadline", "env-configmap-missing",
        "env-secret-missing", "env-configmap-missing-optional", "image-missing-always",
        "image-missing-ifnotpresent", "image-missing-never", "oom", "delete-graceful",
        "delete-forced", "delete-pending", "env-fieldref", "env-resourcefieldref",
        "projected-token", "subpath", "readonly-mount", "restart-once",
    }  # fmt: skip
    assert wanted <= set(NAMES)


def test_cases_that_wait_say_for_what():
    for case in CASES:
        assert (case.settle is Settle.WAITING) == bool(case.reasons), case.name


def test_every_known_difference_names_a_case_and_a_class():
    assert set(KNOWN_DIFFERENCES) <= set(NAMES)
    for case, fields in KNOWN_DIFFERENCES.items():
        for field, reason in fields.items():
            assert reason in CLASSES, (case, field, reason)
