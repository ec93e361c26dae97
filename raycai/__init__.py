"""raycai for drivers in this project's sessions, notebooks and scripts.

    import raycai
    raycai.connect("demo")          # then use Ray as usual: ray.remote, ray.get, serve.run ...

Importing raycai does not import Ray; `connect` does, after checking that this Python and
this Ray match the cluster's (Ray Client refuses a driver that differs).
"""

from __future__ import annotations

from raycai._connect import ConnectError, VersionMismatch, connect, driver_environment

__all__ = ["ConnectError", "VersionMismatch", "connect", "driver_environment"]
