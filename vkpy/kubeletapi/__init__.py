"""The kubelet HTTPS API of a vkpy node: logs, pods, health, metrics; its TLS and auth.

A package of its own that only calls what it is given (like virtual-kubelet's
node/api): the agent wires it with pod callables, a `LogReader`, a `KubeRequests`
for TokenReviews, SubjectAccessReviews and CSRs, and a serving certificate source.
"""

from vkpy.kubeletapi.auth import Attributes, Decision, User, WebhookAuth, request_attributes
from vkpy.kubeletapi.certificates import (
    CsrCertificate,
    FileCertificate,
    SelfSignedCertificate,
    ServingCertificate,
    serving_certificate,
)
from vkpy.kubeletapi.logquery import parse_log_query
from vkpy.kubeletapi.protocols import KubeRequests, PodLister, PodLookup, TlsProvider
from vkpy.kubeletapi.server import KubeletApiServer, RequestAuth
from vkpy.kubeletapi.tls import ServingTls

__all__ = [
    "Attributes",
    "CsrCertificate",
    "Decision",
    "FileCertificate",
    "KubeRequests",
    "KubeletApiServer",
    "PodLister",
    "PodLookup",
    "RequestAuth",
    "SelfSignedCertificate",
    "ServingCertificate",
    "ServingTls",
    "TlsProvider",
    "User",
    "WebhookAuth",
    "parse_log_query",
    "request_attributes",
    "serving_certificate",
]
