"""From an API pod to a backend `PodSpec`: what the kubelet resolves before it runs one.

`fetch_sources` reads the ConfigMaps and Secrets a pod refers to and requests its
service-account tokens (async, thin); `pod_spec` is a pure translation from the pod
dict plus those sources. Features the node cannot provide raise
`UnsupportedPodFeature`, naming the feature; a missing ConfigMap or Secret raises
`PodConfigError` (the kubelet's CreateContainerConfigError, retried).

The package, one concern a module:

- `sources`: what a pod refers to, and fetching it (`Sources`, `fetch_sources`);
- `values`: env values, downward-API fields, resource fields, `$(VAR)` expansion;
- `volumes`: a pod volume as a backend `Volume` (its files);
- `podspec`: the pod → `PodSpec` translation, its containers and resources.
"""

from vkpy.resolve.podspec import pod_spec
from vkpy.resolve.sources import (
    TOKEN_SECONDS_DEFAULT,
    Sources,
    fetch_sources,
    references,
    token_requests,
)
from vkpy.resolve.values import NodeFacts, expand, field_value
from vkpy.resolve.volumes import SUPPORTED_VOLUMES

__all__ = [
    "SUPPORTED_VOLUMES",
    "TOKEN_SECONDS_DEFAULT",
    "NodeFacts",
    "Sources",
    "expand",
    "fetch_sources",
    "field_value",
    "pod_spec",
    "references",
    "token_requests",
]
