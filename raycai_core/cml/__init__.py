"""CML API v2: typed models, errors and an async httpx client."""
