"""How the CLI prints: progress lines for long steps, errors, and exit codes."""

from __future__ import annotations

import sys
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from raycai_core.aio import run_async

if TYPE_CHECKING:  # the lifecycle pulls in pydantic and httpx: not for `raycai env`
    from raycai_core.cluster.types import Progress

T = TypeVar("T")

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_AUTH = 3
EXIT_TIMEOUT = 4
EXIT_INTERRUPTED = 130


class ProgressPrinter:
    """Prints each step once. On a terminal steps carry a counter bar; in logs, plain lines."""

    def __init__(self, stream: Any = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = time.monotonic()

    def __call__(self, event: Progress) -> None:
        if self.quiet and event.level == "info":
            return
        elapsed = time.monotonic() - self.started
        counter = ""
        if event.total:
            counter = f" [{event.done or 0}/{event.total}]"
            if self.tty:
                filled = int(20 * (event.done or 0) / event.total)
                counter = f" [{'#' * filled}{'.' * (20 - filled)}] {event.done or 0}/{event.total}"
        prefix = {"info": "", "warning": "warning: ", "error": "error: "}[event.level]
        line = f"[{elapsed:6.1f}s] {prefix}{event.message}{counter}"
        if self.tty:
            color = {"info": None, "warning": "yellow", "error": "red"}[event.level]
            line = click.style(line, fg=color)
        click.echo(line, file=self.stream)


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    click.echo(click.style("error: ", fg="red", bold=True) + message, err=True)
    sys.exit(code)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine, turning known failures into messages and exit codes."""
    from raycai_core.cluster.desired import CorruptClusterFile
    from raycai_core.cluster.types import (
        ActionsFailed,
        ClusterError,
        ClusterNotFound,
        ClusterTimeout,
        GroupNotGiven,
    )
    from raycai_core.cml.errors import CMLAuthError, CMLError, CMLPermissionDenied
    from raycai_core.credentials import MissingCredentials
    from raycai_core.spec import SpecError
    from raycai_core.target import TargetError

    try:
        return run_async(coro)  # never waits for a stuck thread (see aio.py)
    except KeyboardInterrupt:
        fail(
            "interrupted; rerun the same command to resume (nothing is duplicated)",
            EXIT_INTERRUPTED,
        )
    except SpecError as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    except (MissingCredentials, TargetError) as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    except (CMLAuthError, CMLPermissionDenied) as exc:
        fail(str(exc), EXIT_AUTH)
    except ActionsFailed as exc:  # the refused key stays an authentication failure
        auth = all(isinstance(f.error, (CMLAuthError, CMLPermissionDenied)) for f in exc.failed)
        fail(str(exc), EXIT_AUTH if auth else EXIT_FAILED)
    except ClusterTimeout as exc:
        fail(str(exc), EXIT_TIMEOUT)
    except (ClusterNotFound, GroupNotGiven) as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    except (ClusterError, CMLError, CorruptClusterFile) as exc:
        fail(str(exc))
