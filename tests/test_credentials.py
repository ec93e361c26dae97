"""Where host, key and project come from, and which project directory goes with them."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from raycai_core.credentials import (
    MissingCredentials,
    Secret,
    normalise_host,
    resolve_credentials,
)
from raycai_core.target import TargetError, resolve_target

KEY = "k" * 40
SESSION = {
    "CDSW_DOMAIN": "ml-1.example.com",
    "CDSW_APIV2_KEY": "s" * 40,
    "CDSW_PROJECT_ID": "session-project",
}
EXPORTED = {"CML_HOST": "https://ml-2.example.com/", "CML_API_KEY": KEY, "CML_PROJECT_ID": "p2"}


def test_arguments_then_exported_variables_then_the_session() -> None:
    both = {**SESSION, **EXPORTED}
    creds = resolve_credentials(environ=both)
    assert (creds.host, creds.project_id, creds.source) == (
        "https://ml-2.example.com",
        "p2",
        "environment",
    )
    assert creds.api_key.reveal() == KEY
    session = resolve_credentials(environ=SESSION)
    assert session.host == "https://ml-1.example.com" and session.source == "CML session"
    given = resolve_credentials("ml-3.example.com", "a" * 20, "p3", environ=both)
    assert (given.host, given.project_id, given.source) == (
        "https://ml-3.example.com",
        "p3",
        "argument",
    )
    mixed = resolve_credentials(project_id="p9", environ=SESSION)
    assert mixed.source.startswith("mixed")


def test_the_tui_prefers_the_session_it_runs_in() -> None:
    creds = resolve_credentials(environ={**SESSION, **EXPORTED}, prefer_session=True)
    assert creds.project_id == "session-project" and creds.host == "https://ml-1.example.com"
    # Outside a session the preference changes nothing.
    assert resolve_credentials(environ=EXPORTED, prefer_session=True).project_id == "p2"


def test_cdsw_api_url_gives_the_host() -> None:
    env = {
        "CDSW_API_URL": "https://ml-1.example.com/api/v1",
        "CDSW_APIV2_KEY": "x" * 20,
        "CDSW_PROJECT_ID": "p",
    }
    assert resolve_credentials(environ=env).host == "https://ml-1.example.com"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ml.example.com", "https://ml.example.com"),
        ("https://ml.example.com/", "https://ml.example.com"),
        ("https://ml.example.com/api/v2", "https://ml.example.com"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ],
)
def test_hosts_are_normalised(raw: str, expected: str) -> None:
    assert normalise_host(raw) == expected


def test_missing_values_are_all_named_with_where_to_set_them() -> None:
    with pytest.raises(MissingCredentials) as caught:
        resolve_credentials(environ={"CML_HOST": "h"})
    message = str(caught.value)
    assert "API v2 key" in message and "CML_API_KEY" in message
    assert "project id" in message and "CML_PROJECT_ID" in message
    assert "workspace host" not in message


def test_the_key_never_shows() -> None:
    creds = resolve_credentials(environ=EXPORTED)
    for text in (
        repr(creds),
        str(creds),
        f"{creds.api_key}",
        repr(creds.api_key),
        str([creds.api_key]),
    ):
        assert KEY not in text
    with pytest.raises(TypeError):
        pickle.dumps(creds.api_key)
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b")


def test_asking_for_cml_without_credentials_says_what_is_missing() -> None:
    with pytest.raises(TargetError, match=r"Missing .* Or use --local"):
        resolve_target(local=False, environ={})


def test_a_session_project_other_than_the_chosen_one_is_refused() -> None:
    env = {**SESSION, "CML_PROJECT_ID": "someone-elses"}
    with pytest.raises(TargetError, match="belongs to project session-project"):
        resolve_target(environ=env)
    # The TUI's order picks the session's project, whose files are here.
    target = resolve_target(environ=env, prefer_session=True)
    assert target.credentials.project_id == "session-project"
    # An explicit project directory says where the other project's files are.
    other = resolve_target(environ=env, project_dir="/tmp")
    assert other.project_dir == Path("/tmp").resolve()


def test_outside_a_session_the_project_dir_is_given_or_the_files_are_remote(
    tmp_path: Path,
) -> None:
    with pytest.raises(TargetError, match=r"--project-dir.*or --remote"):
        resolve_target(environ=EXPORTED, remote=False)
    remote = resolve_target(environ=EXPORTED)  # nothing local: the files through the API
    assert remote.remote and remote.kind == "cml" and "remote" in remote.label
    assert not remote.project_dir.exists()
    with pytest.raises(TargetError, match="give one of them"):
        resolve_target(environ=EXPORTED, project_dir=tmp_path, remote=True)
    target = resolve_target(environ={**EXPORTED, "RAYCAI_PROJECT_DIR": str(tmp_path)})
    assert target.project_dir == tmp_path.resolve() and target.kind == "cml"
    assert KEY not in repr(target)
