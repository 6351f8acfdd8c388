"""Operator mode: many virtual nodes from one process, each declared as a ``VirtualNode``.

- `spec`: what a VirtualNode's spec may hold, and the fields the operator sets itself;
- `crd`: the CustomResourceDefinition, its schema generated from the config models
  (``python -m vkpy.operator.crd`` writes manifests/operator/virtualnode-crd.yaml);
- `translate`: a spec and its Secrets' files into the `Settings` one `Agent` runs with;
- `secrets`: Secret references read and written to 0600 files in the state directory;
- `ports`: kubelet API ports handed out from a range, one per node;
- `status`: the VirtualNode's status from an agent's state (pure);
- `fleet`: the running agents, one per VirtualNode, started, restarted and stopped;
- `handlers`: the kopf handlers; `main`: ``vkpy operator``.
"""
