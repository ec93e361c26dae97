"""R6: secrets never show in exceptions or reprs (the client's refused key, a Ray token).

A whole run of the CLI on real Ray, searched for secrets afterwards (command output, files,
Ray's session logs, every process's argv and environment), and R7 (the dashboard and Ray
refuse whoever lacks the cluster's token) ride on the autoscaled cluster of
tests/test_autoscaler_ray.py: one real cluster for both.
"""

from __future__ import annotations

import pytest

from raycai_core.cml.client import CMLClient
from raycai_core.cml.errors import CMLAuthError
from raycai_core.credentials import Credentials, Secret
from raycai_core.local import WorkspaceHandle
from raycai_core.ray.client import RayClient


async def test_exceptions_and_reprs_never_show_secrets(local_workspace: WorkspaceHandle) -> None:
    wrong = "wrong-key-" + "x" * 30
    creds = Credentials(
        host=local_workspace.url, api_key=Secret(wrong), project_id=local_workspace.project_id
    )
    async with CMLClient(creds) as cml:
        with pytest.raises(CMLAuthError) as caught:
            await cml.list_applications()
    for text in (str(caught.value), repr(caught.value), repr(creds), repr(cml), f"{creds}"):
        assert wrong not in text
    assert "API key was refused" in str(caught.value)

    token = Secret("t" * 64)
    client = RayClient("http://127.0.0.9:9", token=token)
    assert token.reveal() not in repr(client)
    await client.aclose()
    assert token.reveal() not in f"{token} {token!r} {[token]}"
