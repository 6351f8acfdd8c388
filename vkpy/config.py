"""The agent's configuration: a YAML file, overridden by ``VKPY_*`` variables, then flags.

Every field is documented here; ``vkpy check-config FILE`` validates a file and
prints the result. Nested fields are overridden with a double underscore, for
example ``VKPY_NODE__NAME=hpc`` or ``VKPY_BACKEND__SOCKET=/run/podman.sock``.
An invalid configuration raises `ConfigError` naming the field and the problem.
"""

from __future__ import annotations

import ipaddress
import os
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from vkpy.errors import ConfigError, PodRejected


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Taint(_Strict):
    key: str
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = "NoSchedule"


class NodeConfig(_Strict):
    name: str = Field(
        "vkpy",
        description="Node name; must be a DNS subdomain.",
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        max_length=253,
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Labels added to the defaults users select on."
    )
    taints: list[Taint] = Field(
        default_factory=list,
        description="Taints added to the default virtual-kubelet.io/provider=<backend> one.",
    )
    provider_taint: bool = Field(
        default=True,
        description="Whether the node has the virtual-kubelet.io/provider=<backend>:NoSchedule "
        "taint. Turn it off only for a node that should take every pod (a cluster given "
        "to one backend, conformance tests): ordinary pods and DaemonSets then land on it, "
        "and any that the backend cannot run fail.",
    )
    capacity: dict[str, str] = Field(
        default_factory=lambda: {"cpu": "8", "memory": "32Gi", "pods": "110"},
        description="Capacity the node advertises when the backend reports none "
        "(Kubernetes quantities; extended resources such as nvidia.com/gpu allowed).",
    )
    advertise_address: str | None = Field(
        None,
        description="InternalIP the node advertises, where the apiserver dials the kubelet "
        "API (for kind: the Docker bridge gateway). Default: the kubelet API's address.",
    )

    @field_validator("advertise_address")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        if value is not None:
            ipaddress.ip_address(value)
        return value


class KubeletApiConfig(_Strict):
    address: str = Field("127.0.0.1", description="Address the kubelet API listens on.")
    port: int = Field(
        10250, ge=0, le=65535, description="Port of the kubelet API (HTTPS); 0 picks a free one."
    )
    serving_certificate: Literal["files", "csr", "self-signed"] = Field(
        "csr",
        description="Where the serving certificate comes from: cert_file/key_file, a "
        "kubernetes.io/kubelet-serving CSR approved by the cluster, or self-signed "
        "(kubectl logs then fails certificate verification).",
    )
    cert_file: Path | None = Field(None, description="Serving certificate (PEM), for 'files'.")
    key_file: Path | None = Field(None, description="Its private key (PEM), for 'files'.")
    approve_own_csr: bool = Field(
        False,
        description="Approve the agent's own serving CSR (needs RBAC to approve "
        "kubernetes.io/kubelet-serving); normally the cluster's approver does it.",
    )
    client_ca_file: Path | None = Field(
        None,
        description="CA for client certificates (the apiserver's kubelet client). "
        "Default: the cluster CA from the kubeconfig or service account.",
    )
    serving_dns_names: list[str] = Field(
        default_factory=list,
        description="DNS names the serving certificate names besides the node's IP "
        "address (for 'csr' and 'self-signed').",
    )
    csr_expiration_seconds: int | None = Field(
        None,
        ge=600,
        description="Lifetime to ask for in the serving CSR (spec.expirationSeconds); "
        "unset: the signer's default (a year). Renewed at 80 % of the lifetime.",
    )
    health_address: str = Field(
        "127.0.0.1", description="Address of the plain-HTTP /healthz and /metrics listener."
    )
    health_port: int = Field(
        10248,
        ge=0,
        le=65535,
        description="Port of the plain-HTTP /healthz and /metrics listener, without "
        "authentication, for probes and scrapers (like the kubelet's healthz port); 0 = off.",
    )

    @model_validator(mode="after")
    def _files_given(self) -> KubeletApiConfig:
        if self.serving_certificate == "files" and (
            self.cert_file is None or self.key_file is None
        ):
            raise ValueError("serving_certificate 'files' needs cert_file and key_file")
        return self


class PodmanConfig(_Strict):
    kind: Literal["podman"] = "podman"
    socket: str | None = Field(
        None,
        description="Podman API socket path or unix:// URL. Unset: the agent starts "
        "`podman system service` itself on a private socket.",
    )
    containers_conf: Path | None = Field(
        None, description="containers.conf for a Podman service the agent starts."
    )
    allowed_host_paths: list[str] = Field(
        default_factory=list,
        description="hostPath volumes are refused unless under one of these directories.",
    )
    network: Literal["bridge", "host", "none"] = Field(
        "bridge", description="Network mode of each pod's Podman pod."
    )
    resync_seconds: float = Field(
        60.0, gt=0, description="Full status resync period, a safety net under the events."
    )
    state_dir: Path | None = Field(
        None,
        description="Directory for each pod's files: staged ConfigMap/Secret volumes, "
        "emptyDirs and the container specs restarts are made from (mode 0700 per pod). "
        "Unset: /var/lib/vkpy/podman as root, else ~/.local/state/vkpy/podman.",
    )
    memory_dir: Path = Field(
        Path("/dev/shm/vkpy-podman"),  # noqa: S108 - tmpfs by design; per-pod dirs are 0700
        description="Directory on a tmpfs for emptyDir volumes with medium Memory "
        "(shared by the pod's containers; sizeLimit is not enforced).",
    )
    api_timeout_seconds: float = Field(
        30.0, gt=0, description="Timeout of one Podman API call (streams and pulls excepted)."
    )
    pull_timeout_seconds: float = Field(600.0, gt=0, description="Timeout of one image pull.")
    max_pods: int = Field(
        110,
        ge=1,
        description="Pods the node accepts; reported with the host's CPU and memory "
        "as the node's capacity.",
    )


class SshConfig(_Strict):
    """How the agent reaches a cluster's login node: one persistent SSH connection."""

    host: str = Field(description="Login node host name or address.")
    port: int = Field(22, ge=1, le=65535, description="SSH port of the login node.")
    user: str = Field(description="Account the pods run as on the cluster.")
    key_files: list[Path] = Field(
        default_factory=list,
        description="Private keys to authenticate with (unencrypted). Empty: the "
        "ssh-agent's keys and the default keys in ~/.ssh, as OpenSSH does.",
    )
    use_agent: bool = Field(True, description="Also offer the keys of the ssh-agent, if one runs.")
    known_hosts: Path = Field(
        Path("~/.ssh/known_hosts"),
        description="known_hosts file the login node's host key is checked against. A key "
        "it does not list refuses the connection (unless accept_new_host_keys), and a key "
        "that differs from the one it lists always does.",
    )
    accept_new_host_keys: bool = Field(
        False,
        description="Trust a host the known_hosts file does not list yet, and record its "
        "key there (OpenSSH's StrictHostKeyChecking=accept-new). Off: unknown keys refuse.",
    )
    pool_size: int = Field(
        1,
        ge=1,
        le=16,
        description="Connections kept open; commands share them as channels (multiplexed).",
    )
    max_sessions: int = Field(
        10,
        ge=3,
        description="Channels open at once on one connection; keep it at or below the "
        "sshd's MaxSessions (OpenSSH's default is 10).",
    )
    max_log_streams: int = Field(
        2,
        ge=1,
        description="Of those channels, how many may follow logs (kubectl logs -f) at once.",
    )
    keepalive_seconds: float = Field(
        15.0, gt=0, description="Keepalive interval; a dead connection is noticed and reopened."
    )
    keepalive_count_max: int = Field(
        3, ge=1, description="Unanswered keepalives before the connection counts as dead."
    )
    connect_timeout_seconds: float = Field(
        15.0, gt=0, description="Timeout of one connection attempt (TCP, key exchange, login)."
    )
    reconnect_initial_seconds: float = Field(
        0.5, gt=0, description="Wait after a failed connection attempt; doubles per failure."
    )
    reconnect_max_seconds: float = Field(
        30.0, gt=0, description="Longest wait between connection attempts."
    )

    @model_validator(mode="after")
    def _streams_fit(self) -> SshConfig:
        if self.max_log_streams > self.max_sessions - 2:
            raise ValueError("max_log_streams must leave two channels for commands and SFTP")
        return self


class _BatchConfig(_Strict):
    """What every batch-system backend shares: where commands run, the pods' work
    directories, and the container runtime the job script uses."""

    ssh: SshConfig | None = Field(
        None,
        description="The login node (submit node) to reach over SSH. Unset: the agent runs "
        "on it itself and calls the batch system's commands directly.",
    )
    work_dir: str = Field(
        "vkpy",
        description="Base directory of the pods' work directories on the cluster (job "
        "script, staged files, logs, exit codes), relative to the login user's home unless "
        "absolute (no ~). It must be on a filesystem the compute nodes share with the "
        "login node.",
        pattern=r"^[^~\n:,][^\n:,]*$",
    )
    runtime: Literal["apptainer", "singularity", "podman"] = Field(
        "apptainer", description="Container runtime the job script runs containers with."
    )
    runtime_path: str | None = Field(
        None,
        description="The runtime's executable on the compute nodes. Unset: found on PATH.",
        pattern=r"^[^=\n]+$",
    )
    runtime_flags: list[str] = Field(
        default_factory=list,
        description="Flags added to every container run (for example ['--nv'] for "
        "Apptainer on GPU nodes); the site's choice, never the pod's.",
    )
    allowed_host_paths: list[str] = Field(
        default_factory=list,
        description="hostPath volumes are refused unless under one of these directories "
        "of the compute nodes (for example /scratch).",
    )
    podman_network: Literal["host", "none"] = Field(
        "host",
        description="Network of containers under the podman runtime (rootless Podman "
        "offers host or none); host shares the compute node's network, as Apptainer does.",
    )


class SlurmConfig(_BatchConfig):
    """Pods as Slurm jobs, submitted over SSH to a login node (or locally on one)."""

    kind: Literal["slurm"] = "slurm"
    partition: str | None = Field(None, description="Slurm partition (--partition).")
    account: str | None = Field(None, description="Slurm account (--account).")
    qos: str | None = Field(None, description="Slurm QOS (--qos).")
    sbatch_flags: list[str] = Field(
        default_factory=list,
        description="Extra sbatch flags for every pod, each '--flag=value' (checked like "
        "the slurm.vkpy.io/flags annotation).",
    )
    accounting: Literal["sacct", "jobcomp", "none"] = Field(
        "sacct",
        description="Where jobs that left the queue are looked up: sacct (slurmdbd), "
        "sacct -c (the jobcomp/filetxt file, for clusters without slurmdbd), or nowhere "
        "(the exit codes the job script records are all there is).",
    )
    kill_wait_seconds: int = Field(
        30,
        ge=1,
        description="The cluster's KillWait: when Slurm ends a job itself (time limit, "
        "preemption), containers get SIGTERM and this much time, less a second, before "
        "SIGKILL.",
    )
    command_timeout_seconds: float = Field(
        60.0, gt=0, description="Timeout of one command (sbatch, squeue...) on the login node."
    )
    delete_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="After a pod's grace period, how long delete waits for Slurm to confirm "
        "the job has ended before failing (the agent then retries).",
    )
    work_dir_retention_seconds: int = Field(
        0,
        ge=0,
        description="Keep a deleted pod's work directory (logs, script) this long, under "
        "<work_dir>/<node>/.deleted, for debugging; 0 removes it at once.",
    )
    capacity_from_sinfo: bool = Field(
        True,
        description="Advertise the partition's CPUs, memory and GPUs (from sinfo) as the "
        "node's capacity; off: node.capacity is used.",
    )
    max_pods: int = Field(1000, ge=1, description="Pods the node accepts.")


class HTCondorConfig(_BatchConfig):
    """Pods as HTCondor jobs, submitted over SSH to a submit node (or locally on one)."""

    kind: Literal["htcondor"] = "htcondor"
    file_transfer: Literal["shared", "transfer"] = Field(
        "shared",
        description="shared: the job runs in the pod's work directory "
        "<work_dir>/<node>/<uid>, which must be on a filesystem the execute nodes share; "
        "container status and logs are read from it live. transfer: HTCondor copies the "
        "staged files (spec/, status/, volumes/) to the job's scratch directory "
        "(transfer_input_files) and brings status/ and logs/ back when the job ends or is "
        "evicted; no shared filesystem is needed, but until then the pod shows only what "
        "condor_q says (its first container running from the job's start) and "
        "`kubectl logs` shows nothing; exit codes and logs arrive at the end.",
    )
    submit_commands: dict[str, str] = Field(
        default_factory=dict,
        description="Extra submit commands for every pod, e.g. {requirements: "
        "'(OpSysMajorVer == 9)', '+AccountingGroup': '\"group.user\"'}; pods add their "
        "own with annotations htcondor.vkpy.io/<command>. Commands vkpy sets itself "
        "(executable, output, request_*, +Vkpy*...) are refused.",
    )
    kill_wait_seconds: int = Field(
        30,
        ge=1,
        description="The job's job_max_vacate_time: when HTCondor ends a job itself "
        "(condor_rm, periodic_remove, eviction), containers get SIGTERM and this much "
        "time, less a second, before SIGKILL.",
    )
    command_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="Timeout of one command (condor_submit, condor_q...) on the submit node.",
    )
    delete_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="After a pod's grace period, how long delete waits for the job to leave "
        "the queue before failing (the agent then retries).",
    )
    work_dir_retention_seconds: int = Field(
        0,
        ge=0,
        description="Keep a deleted pod's work directory (logs, script) this long, under "
        "<work_dir>/<node>/.deleted, for debugging; 0 removes it at once.",
    )
    max_pods: int = Field(1000, ge=1, description="Pods the node accepts.")

    @field_validator("submit_commands")
    @classmethod
    def _commands_allowed(cls, commands: dict[str, str]) -> dict[str, str]:
        from vkpy.backends.htcondor.submit import extra_commands

        try:
            return extra_commands(commands, {})
        except PodRejected as exc:
            raise ValueError(str(exc)) from None


BackendConfig = Annotated[PodmanConfig | SlurmConfig | HTCondorConfig, Field(discriminator="kind")]


class Settings(BaseSettings):
    """The whole agent configuration."""

    model_config = SettingsConfigDict(
        env_prefix="VKPY_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    node: NodeConfig = Field(default_factory=NodeConfig)  # type: ignore[arg-type]
    kubelet_api: KubeletApiConfig = Field(default_factory=KubeletApiConfig)  # type: ignore[arg-type]
    backend: BackendConfig = Field(default_factory=PodmanConfig)  # type: ignore[arg-type]
    state_dir: Path | None = Field(
        None,
        description="Directory for the agent's own state (the serving key and certificate). "
        "Unset: /var/lib/vkpy/<node> as root, else ~/.local/state/vkpy/<node>.",
    )
    lease_duration_seconds: int = Field(40, ge=10, description="Node Lease duration.")
    lease_renew_seconds: float = Field(10.0, gt=0, description="How often the Lease is renewed.")
    node_status_seconds: float = Field(
        60.0, gt=0, description="Node status is written at least this often, and on change."
    )
    node_health_seconds: float = Field(
        60.0,
        gt=0,
        description="How often backend health is checked for the node's Ready condition "
        "(at once when a backend call finds the backend unreachable, and every few seconds "
        "while it is unhealthy).",
    )
    pod_resync_seconds: float = Field(
        60.0, gt=0, description="How often every pod is reconciled even without events."
    )
    status_poll_seconds: float = Field(
        5.0,
        gt=0,
        description="How often backend status is read for all pods in one call "
        "(backends that push changes are read every pod_resync_seconds instead).",
    )
    log_format: Literal["text", "json"] = Field("text", description="Log record format.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Flags (init values) beat the environment, which beats the file.
        document = InitSettingsSource(settings_cls, init_kwargs=_document.get() or {})
        return (init_settings, env_settings, document)


_document: ContextVar[dict[str, Any] | None] = ContextVar("vkpy_config_document", default=None)


def state_directory(settings: Settings) -> Path:
    """Where the agent keeps its own state; see `Settings.state_dir`."""
    if settings.state_dir is not None:
        return settings.state_dir
    base = Path("/var/lib/vkpy") if os.geteuid() == 0 else Path.home() / ".local/state/vkpy"
    return base / settings.node.name


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        problems.append(f"{where}: {item['msg']}")
    return "; ".join(problems)


def read_document(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings")
    return loaded or {}


def load(path: Path | None, overrides: dict[str, Any] | None = None) -> Settings:
    """Read ``path`` (YAML), apply ``VKPY_*`` variables, then ``overrides`` (from flags)."""
    token = _document.set(read_document(path) if path is not None else {})
    try:
        return Settings(**(overrides or {}))
    except ValidationError as exc:
        source = f"{path}: " if path is not None else ""
        raise ConfigError(f"{source}invalid configuration: {_describe(exc)}") from exc
    finally:
        _document.reset(token)
