"""Worker groups in the TUI, pure parts: scale requests merged per group, a group's row in
the apps table, the title's worker counts, the scale dialog's group check."""

from __future__ import annotations

from collections import deque

from raycai_core.cluster.types import ScaleTarget
from raycai_tui.operations import ScaleRequest, queue_scale
from raycai_tui.screens.cluster import title_text, workers_text
from raycai_tui.screens.scale import group_problem
from raycai_tui.widgets.apps_table import view_rows
from tests.tui.fixed_data import demo_view, train_view


def req(text: str, group: str | None = None, allow_busy: bool = False) -> ScaleRequest:
    return ScaleRequest(ScaleTarget.parse(text), allow_busy, group)


def test_scale_requests_queue_and_merge_per_group() -> None:
    queue: deque[object] = deque()
    for request in (req("+1", "gpu"), req("+1", "worker"), req("+1", "gpu"), req("3", "worker")):
        queue_scale(queue, request)
    # gpu +1 +1 merged across the worker request between them; worker +1 then 3 is 3.
    assert list(queue) == [req("+2", "gpu"), req("3", "worker")]
    queue_scale(queue, req("-1", "gpu"))  # -1 after +2 is not one exact request
    assert list(queue) == [req("+2", "gpu"), req("3", "worker"), req("-1", "gpu")]
    queue_scale(queue, req("-1", "gpu"))
    assert list(queue)[-1] == req("-2", "gpu")
    queue_scale(queue, req("+1"))  # the only group of a one-group cluster: its own queue
    assert list(queue)[-1] == req("+1") and len(queue) == 4
    assert str(req("+2", "gpu")) == "gpu=+2" and str(req("+2")) == "+2"


def test_a_grouped_cluster_has_a_row_per_group_before_its_workers() -> None:
    rows = dict(view_rows(train_view(), autoscaler=True))
    assert list(rows) == ["head", "worker", "worker-1", "worker-2", "gpu", "gpu-1", "gpu-2"]
    worker = [str(cell) for cell in rows["worker"]]
    gpu = [str(cell) for cell in rows["gpu"]]
    assert worker[:5] == ["worker", "group", "2 wanted", "2 run", "2 joined"]
    assert gpu[:5] == ["gpu", "group", "min 0, max 4, target 2", "1 run", "1 joined"]
    assert gpu[6:9] == ["8", "32", "1"] and gpu[-1] == "accelerator L40S"
    # Without the autoscaler keeping it, no target is claimed.
    assert str(dict(view_rows(train_view()))["gpu"][2]) == "min 0, max 4"


def test_a_one_group_cluster_shows_its_nodes_only_as_before() -> None:
    view = demo_view()
    assert [key for key, _ in view_rows(view)] == ["head", "worker-1", "worker-2"]
    assert workers_text(view) == "workers: 2 wanted, 1 running, 1 joined Ray"


def test_the_title_of_an_autoscaled_grouped_cluster_says_min_max_and_target() -> None:
    view = train_view()
    assert workers_text(view) == (
        "workers in 2 groups: min 2, max 6, target 4, 3 running, 3 joined Ray"
    )
    assert "kept by the cluster's autoscaler" in title_text(view, healing=True).plain


def test_the_scale_dialog_checks_the_group_as_typed() -> None:
    groups = {"worker": 2, "gpu": 1}
    assert group_problem("gpu", groups) is None
    assert group_problem(" ", groups) == "say which group: worker, gpu"
    assert group_problem("gpx", groups) == "no group 'gpx': worker, gpu"
    problem = group_problem("GPU", groups)
    assert problem is not None and "lower-case" in problem and problem.endswith("worker, gpu")
