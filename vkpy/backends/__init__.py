"""Backends: one package per system that runs pods: `podman`, and the batch systems
`slurm` and `htcondor` on the layer they share (`batch`).

Each implements `vkpy.backend.Backend` and whichever optional capabilities it can
(`PodNotifier`, `LogReader`); `vkpy.testing.contract` holds the checks they all pass.
Each package's ``config`` module holds its configuration model, which `vkpy.config`
assembles without loading the backend.
"""
