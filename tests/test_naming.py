"""App names and workspace-unique subdomains."""

from __future__ import annotations

import re

import pytest

from raycai_core.naming import (
    app_environment,
    app_name,
    cluster_hash,
    subdomain,
    worker_index,
    worker_node,
)
from raycai_core.spec import NAME_MAX

SUBDOMAIN_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def test_subdomains_are_valid_and_within_63_characters_for_the_longest_names() -> None:
    longest = "a" * NAME_MAX
    for node in ("head", "worker-1", "worker-500", "worker-9999"):
        value = subdomain("project-id-xyz", longest, node)
        assert SUBDOMAIN_RE.match(value), value
        assert len(value) <= 63


def test_two_projects_with_the_same_cluster_name_do_not_clash() -> None:
    assert subdomain("p1", "demo", "head") != subdomain("p2", "demo", "head")
    assert subdomain("p1", "demo", "head") == subdomain("p1", "demo", "head")
    assert cluster_hash("p1", "demo") != cluster_hash("p1", "demo2")


def test_nodes_of_one_cluster_get_distinct_subdomains() -> None:
    values = {subdomain("p", "demo", n) for n in ["head"] + [worker_node(k) for k in range(1, 50)]}
    assert len(values) == 50


def test_worker_index_parses_only_worker_nodes() -> None:
    assert worker_index("worker-12") == 12
    for other in ("head", "worker-0", "worker-01", "worker-x", "worker-1 ", "xworker-1"):
        assert worker_index(other) is None
    with pytest.raises(ValueError):
        worker_node(0)
    with pytest.raises(ValueError):
        subdomain("p", "demo", "node-7")


def test_app_names_and_environment() -> None:
    assert app_name("demo", "worker-3") == "raycai-demo-worker-3"
    assert app_environment("demo", "head") == {
        "RAYCAI_CLUSTER": "demo",
        "RAYCAI_ROLE": "head",
        "RAYCAI_NODE": "head",
    }
