"""The pods of this node: one ordered worker per pod UID, many pods in parallel.

Two parts: `controller` takes the inputs (the pod watch, the backend's records,
timers, the resync) and schedules each pod's worker; `steps` is what one worker does
for its pod (create, stop, delete, status, events). `state` holds what is known of
one pod, its lifecycle as a named `Stage`.
"""

from vkpy.pods.controller import PodController
from vkpy.pods.state import Stage, Tracked

__all__ = ["PodController", "Stage", "Tracked"]
