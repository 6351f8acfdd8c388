"""The fidelity corpus: the same pods on a real kubelet and on vkpy, statuses compared.

``corpus`` holds the cases (pod specs, how each settles, what is done to it),
``normalize`` turns a pod and its events into what can be compared (no times, IPs,
container or image IDs), ``report`` lists what differs as a table, ``known`` says which
differences are known and why, and ``runner`` runs the cases on a node, all at once.
"""
