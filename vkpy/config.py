"""The agent's configuration: a YAML file, overridden by ``VKPY_*`` variables, then flags.

Every field is documented, here and in each backend's own model (`PodmanConfig`,
`SlurmConfig`, `HTCondorConfig`, on `BatchConfig`, in their packages' ``config``
modules, which this module assembles into one ``backend`` union without loading any
backend itself); ``vkpy check-config FILE`` validates a file and
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
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from vkpy.backends.batch.config import BatchConfig
from vkpy.backends.htcondor.config import HTCondorConfig
from vkpy.backends.podman.config import PodmanConfig
from vkpy.backends.slurm.config import SlurmConfig
from vkpy.configbase import Strict
from vkpy.errors import ConfigError
from vkpy.transport.config import SshConfig

__all__ = [
    "BackendConfig",
    "BatchConfig",
    "ConfigError",
    "HTCondorConfig",
    "KubeletApiConfig",
    "NodeConfig",
    "PodmanConfig",
    "Settings",
    "SlurmConfig",
    "SshConfig",
    "Taint",
    "describe",
    "load",
    "read_document",
    "state_directory",
]


class Taint(Strict):
    key: str
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = "NoSchedule"


class NodeConfig(Strict):
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


class KubeletApiConfig(Strict):
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
    streaming_idle_timeout: float = Field(
        14400.0,
        ge=0,
        description="Seconds an exec, attach or port-forward session may pass with no bytes "
        "either way before it is closed (the kubelet's streamingConnectionIdleTimeout, 4 h); "
        "0 = never.",
    )
    stream_creation_timeout: float = Field(
        30.0, gt=0, description="Seconds a client has to open a session's streams, as the kubelet."
    )
    max_streaming_sessions: int = Field(
        64, ge=1, description="Exec, attach and port-forward sessions served at once; more get 429."
    )
    websocket_streaming: bool = Field(
        True,
        description="Declare ExtendWebSocketsToKubelet in the Node's status.declaredFeatures, "
        "so apiservers from 1.36 pass kubectl's WebSockets straight through instead of "
        "speaking SPDY to this node. Declared only when the backend can exec.",
    )

    @model_validator(mode="after")
    def _files_given(self) -> KubeletApiConfig:
        if self.serving_certificate == "files" and (
            self.cert_file is None or self.key_file is None
        ):
            raise ValueError("serving_certificate 'files' needs cert_file and key_file")
        return self


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
        description="How often backend status is read for all pods in one call, for "
        "backends that set no pace of their own (backends that push changes are read "
        "every pod_resync_seconds; batch backends every backend.status_read_seconds).",
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


def describe(error: ValidationError) -> str:
    """One line naming every invalid field and its problem."""
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
        raise ConfigError(f"{source}invalid configuration: {describe(exc)}") from exc
    finally:
        _document.reset(token)
