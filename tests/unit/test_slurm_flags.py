import pytest

from vkpy.backend import Container, PodSpec, Resources
from vkpy.backends.slurm import flags
from vkpy.errors import PodRejected

MIB = 1024 * 1024


@pytest.mark.parametrize(
    "flag",
    [
        "--constraint=haswell",
        "--exclusive",
        "--exclusive=user",
        "--hold",
        "--mail-type=END",
        "--time=10",
        "--nodes=1",
        "-Cgpu",
        "-H",
        "-t30",
        "--reservation=maint",
        "--gres=gpu:a100:2",
    ],
)
def test_allowed_flags(flag):
    assert flags.check_flag(flag, source="test") == flag


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--output=/tmp/x", "not allowed: vkpy writes each container's output"),
        ("--error=/tmp/x", "not allowed"),
        ("--wrap=id", "vkpy submits its own job script"),
        ("--chdir=/", "work directory"),
        ("--parsable", "not allowed"),
        ("--job-name=x", "carries the pod UID"),
        ("--comment=x", "names the pod"),
        ("--array=1-3", "one pod is one job"),
        ("--export=NONE", "login environment"),
        ("--requeue", "restartPolicy"),
        ("--signal=B:USR1@30", "grace period"),
        ("--wait", "return at once"),
        ("--clusters=other", "own cluster"),
        ("--out=/tmp/x", "not an sbatch option"),  # sbatch would take it for --output
        ("--wr=id", "not an sbatch option"),
        ("-o/tmp/x", "not allowed"),
        ("-Jname", "not allowed"),
        ("-D/", "not allowed"),
        ("-W", "not allowed"),
        ("-p", "attach the value"),
        ("-Hv", "one flag per word"),
        ("-Z", "not an sbatch option"),
        ("gpu", "not a flag"),
        ("", "not a flag"),
        ("-", "not a flag"),
    ],
)
def test_refused_flags(flag, message):
    with pytest.raises(PodRejected, match=message):
        flags.check_flag(flag, source="annotation slurm.vkpy.io/flags")


def test_refusal_names_its_source():
    with pytest.raises(PodRejected, match=r"^backend.sbatch_flags: '--wrap=x'"):
        flags.check_flags(["--hold", "--wrap=x"], source="backend.sbatch_flags")


def test_annotations_become_flags():
    annotations = {
        "slurm.vkpy.io/partition": "gpu",
        "slurm.vkpy.io/account": "proj-1",
        "slurm.vkpy.io/qos": "high",
        "slurm.vkpy.io/flags": "--constraint='a&b' --exclusive",
        "example.com/other": "ignored",
    }
    assert flags.annotation_flags(annotations) == [
        "--account=proj-1",
        "--constraint=a&b",
        "--exclusive",
        "--partition=gpu",
        "--qos=high",
    ]


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ({"slurm.vkpy.io/flags": "--output=/etc/passwd"}, "not allowed"),
        ({"slurm.vkpy.io/flags": "--constraint='unclosed"}, "cannot split"),
        ({"slurm.vkpy.io/flags": "--partition gpu"}, "'gpu' is not a flag"),
        ({"slurm.vkpy.io/partition": "gpu --wrap=x"}, "not a plain partition name"),
        ({"slurm.vkpy.io/partition": "a\nb"}, "not a plain partition name"),
        ({"slurm.vkpy.io/time": "10"}, "unknown annotation slurm.vkpy.io/time"),
    ],
)
def test_bad_annotations_are_refused(annotations, message):
    with pytest.raises(PodRejected, match=message):
        flags.annotation_flags(annotations)


def pod(apps, inits=()):
    def container(name, resources):
        return Container(name, "img", resources=resources)

    return PodSpec(
        uid="u",
        namespace="n",
        name="p",
        containers=tuple(container(f"a{i}", r) for i, r in enumerate(apps)),
        init_containers=tuple(container(f"i{i}", r) for i, r in enumerate(inits)),
    )


def test_resources_sum_app_containers_and_take_the_largest_init():
    resources = flags.job_resources(
        pod(
            [Resources(cpu_millis=500, memory_bytes=100 * MIB), Resources(cpu_millis=1200, gpus=1)],
            [Resources(cpu_millis=3000, memory_bytes=50 * MIB)],
        )
    )
    assert resources == flags.JobResources(cpus=3, memory_mib=100, gpus=1)
    assert resources.flags() == ["--cpus-per-task=3", "--mem=100M", "--gres=gpu:1"]


def test_resources_round_up_and_may_be_absent():
    assert flags.job_resources(pod([Resources(cpu_millis=1, memory_bytes=1)])) == (
        flags.JobResources(cpus=1, memory_mib=1)
    )
    assert flags.job_resources(pod([Resources()])).flags() == []


@pytest.mark.parametrize(
    ("seconds", "flag"), [(None, None), (1, "--time=1"), (60, "--time=1"), (61, "--time=2")]
)
def test_time_limit_in_minutes(seconds, flag):
    assert flags.time_limit(seconds) == flag
