"""Writes tests/module_seconds.json, the seconds each test module took, from a pytest run's
`--durations=0` report (the order in which xdist hands the modules out: tests/conftest.py).

    ./dev test --fast -m "not ray" -p no:cacheprovider --durations=0 > run.log
    python -m tests.module_seconds < run.log > tests/module_seconds.json
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict

DURATION = re.compile(r"^([0-9.]+)s (?:call|setup|teardown)\s+(\S+)")


def module_seconds(lines: list[str]) -> dict[str, float]:
    seconds: dict[str, float] = defaultdict(float)
    for line in lines:
        match = DURATION.match(line)
        if match:
            seconds[match.group(2).split("::", 1)[0]] += float(match.group(1))
    return {module: round(total, 1) for module, total in sorted(seconds.items())}


if __name__ == "__main__":
    json.dump(module_seconds(sys.stdin.readlines()), sys.stdout, indent=1)
    sys.stdout.write("\n")
