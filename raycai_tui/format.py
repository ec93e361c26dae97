"""Text for the tables and panels: ages, sizes, statuses. Pure functions, no I/O."""

from __future__ import annotations

import time
from functools import lru_cache

from rich.text import Text

GIB = 2**30

# Application statuses (AppStatus values) and launcher phases, by how worrying they are.
STATUS_STYLES = {
    "running": "green",
    "starting": "yellow",
    "stopping": "yellow",
    "stopped": "dim",
    "failed": "bold red",
    "unknown": "dim",
}
PHASE_STYLES = {
    "running": "green",
    "joined": "green",
    "failed": "bold red",
    "ray-exited": "red",
    "rejoining": "yellow",
    "recovering": "yellow",
    "waiting-for-head": "yellow",
    "starting-ray": "yellow",
    "stopped": "dim",
}


def age(seconds: float | None) -> str:
    """45s, 12m, 3h, 2d: the largest whole unit."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def number(value: float) -> str:
    """2, 0.5, 1.25: no trailing zeros."""
    return f"{value:.2f}".rstrip("0").rstrip(".") if value % 1 else f"{value:.0f}"


def used_of(pair: tuple[float, float], scale: float = 1.0) -> str:
    used, total = pair
    return f"{number(used / scale)}/{number(total / scale)}"


def clock(timestamp: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(timestamp))


# Cells are shared Text objects (never mutated): building thousands per refresh is the
# largest cost of a big table, and an identical object lets the table skip re-rendering.
@lru_cache(maxsize=64)
def status_text(status: str) -> Text:
    """An application status (AppStatus.value) in upper case, coloured."""
    return Text(status.upper(), style=STATUS_STYLES.get(status, ""))


@lru_cache(maxsize=64)
def phase_text(phase: str) -> Text:
    return Text(phase, style=PHASE_STYLES.get(phase, ""))


@lru_cache(maxsize=1024)
def styled(text: str, style: str) -> Text:
    return Text(text, style=style)


def one_line(text: str, limit: int = 160) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def describe_error(error: BaseException) -> str:
    """An exception as one readable line (its message, else its type)."""
    text = str(error).strip()
    return one_line(text, 400) if text else type(error).__name__
