"""App names and workspace-unique subdomains."""

from __future__ import annotations

import re

import pytest

from raycai_core.naming import (
    app_environment,
    app_name,
    cluster_hash,
    group_hash,
    group_node,
    node_group,
    node_index,
    role_of,
    subdomain,
    worker_index,
    worker_node,
)
from raycai_core.spec import GROUP_NAME_MAX, MAX_WORKERS, NAME_MAX

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
    for node in ("node-0", "Node-7", "head-1", "a" * 13 + "-1", "gpu-01", "gpu"):
        with pytest.raises(ValueError, match="unknown node"):
            subdomain("p", "demo", node)


def test_app_names_and_environment() -> None:
    assert app_name("demo", "worker-3") == "raycai-demo-worker-3"
    assert app_environment("demo", "head") == {
        "RAYCAI_CLUSTER": "demo",
        "RAYCAI_ROLE": "head",
        "RAYCAI_NODE": "head",
    }


def test_group_nodes_parse_back_and_the_default_group_keeps_its_names() -> None:
    assert group_node("gpu", 3) == "gpu-3"
    assert group_node("worker", 3) == worker_node(3) == "worker-3"
    assert (node_group("gpu2-14"), node_index("gpu2-14")) == ("gpu2", 14)
    assert (node_group("worker-1"), node_index("worker-1")) == ("worker", 1)
    # The head belongs to no worker group; anything else is not a node.
    for other in ("head", "head-1", "gpu-0", "gpu-01", "g-pu-1", "GPU-1", "gpu", "a" * 13 + "-1"):
        assert node_group(other) is None and node_index(other) is None, other
    assert worker_index("gpu-3") is None  # worker_index stays the default group's
    assert role_of("gpu-3") == "worker" and role_of("head") == "head"
    for group, index in (("gpu", 0), ("head", 1), ("GPU", 1), ("g-pu", 1)):
        with pytest.raises(ValueError):
            group_node(group, index)


def test_subdomains_of_groups_keep_the_worker_group_and_hash_the_others() -> None:
    digest = cluster_hash("p", "demo")
    assert subdomain("p", "demo", "head") == f"ray-demo-{digest}-h"
    assert subdomain("p", "demo", "worker-3") == f"ray-demo-{digest}-w3"
    assert subdomain("p", "demo", "gpu-3") == f"ray-demo-{digest}-{group_hash('gpu')}w3"
    assert re.fullmatch(r"[0-9a-f]{4}", group_hash("gpu"))
    assert app_name("demo", "gpu-3") == "raycai-demo-gpu-3"


def test_group_subdomains_fit_63_characters_for_the_longest_names() -> None:
    cluster = "a" * NAME_MAX
    for group in ("z" * GROUP_NAME_MAX, "worker", "g"):
        for index in (1, MAX_WORKERS):
            value = subdomain("project-id-xyz", cluster, group_node(group, index))
            assert SUBDOMAIN_RE.match(value), value
            assert len(value) <= 63, value


def test_nodes_of_several_groups_never_share_a_subdomain() -> None:
    groups = ["worker", "cpu1", "gpu", "gpu2", "a100", "l40s", "z" * GROUP_NAME_MAX]
    nodes = ["head"] + [group_node(g, k) for g in groups for k in range(1, 120)]
    values = [subdomain("p", "demo", node) for node in nodes]
    assert len(set(values)) == len(nodes)


def test_workers_carry_their_group_in_the_environment() -> None:
    assert app_environment("demo", "gpu-2") == {
        "RAYCAI_CLUSTER": "demo",
        "RAYCAI_ROLE": "worker",
        "RAYCAI_NODE": "gpu-2",
        "RAYCAI_GROUP": "gpu",
    }
    assert app_environment("demo", "worker-1")["RAYCAI_GROUP"] == "worker"
    assert "RAYCAI_GROUP" not in app_environment("demo", "head")
