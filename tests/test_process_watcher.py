"""The /proc watcher that the secrets and autoscaler tests rely on sees what it must see."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.fixtures.patience import Deadline
from tests.helpers import ProcessWatcher


def test_the_watcher_records_argv_and_environment_of_a_process() -> None:
    with ProcessWatcher() as watcher:
        child = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(1.5)", "raycai_core.cli-marker"],
            env={"MARKED_VALUE": "x" * 20},
        )
        try:
            deadline = Deadline(10, every=0.1)
            while not watcher.commands(b"raycai_core.cli-marker") and not deadline.passed():
                time.sleep(0.1)
        finally:
            child.wait()
    commands = watcher.commands(b"raycai_core.cli-marker")
    assert commands and commands[0].startswith(sys.executable)
    assert any(b"MARKED_VALUE=" + b"x" * 20 in data for data in watcher.seen.values())
    assert watcher.commands(b"no-such-marker") == []
