"""Running work on a cluster: driver access (addresses, token path, versions), Ray Jobs and
Ray Serve over the head's dashboard API (httpx; never imports ray)."""
