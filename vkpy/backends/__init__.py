"""Backends: one package per system that runs pods (Podman, Slurm, HTCondor).

Each implements `vkpy.backend.Backend` and whichever optional capabilities it can
(`PodNotifier`, `LogReader`); `vkpy.testing.contract` holds the checks they all pass.
"""
