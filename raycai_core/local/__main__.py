"""`python -m raycai_core.local serve --data-dir D [...]`: the workspace in the foreground.

Writes D/workspace.json (0600) once listening; SIGTERM or SIGINT stops every app process
and exits. `raycai local start` runs this in the background.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import time
from pathlib import Path

from raycai_core.atomic import atomic_write_json, read_json
from raycai_core.local.config import WorkspaceConfig
from raycai_core.local.daemon import WORKSPACE_FILE
from raycai_core.local.workspace import LocalWorkspace


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m raycai_core.local")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the local workspace in the foreground")
    serve.add_argument("--data-dir", required=True, type=Path)
    serve.add_argument("--port", type=int, default=0)
    serve.add_argument("--start-delay", type=float, default=0.0)
    serve.add_argument("--quota-cpu", type=float)
    serve.add_argument("--quota-memory", type=float)
    serve.add_argument("--quota-gpu", type=int)
    serve.add_argument("--restart-attempts", type=int, default=3)
    serve.add_argument("--restart-delay", type=float, default=300.0)
    serve.add_argument("--stop-grace", type=float, default=20.0)
    serve.add_argument("--refuse-dot-folders", action="store_true")
    return parser.parse_args(argv)


async def serve(data_dir: Path, config: WorkspaceConfig) -> None:
    workspace = LocalWorkspace(data_dir, config)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    info_path = workspace.data_dir / WORKSPACE_FILE
    try:
        await workspace.start()
        info = {
            "url": workspace.url,
            "api_key": workspace.api_key,
            "project_id": workspace.project_id,
            "project_dir": str(workspace.project_dir),
            "pid": os.getpid(),
            "started_at": time.time(),
        }
        atomic_write_json(info_path, info, mode=0o600)
        await stopping.wait()
        logging.info("stopping: stopping every app process")
    finally:
        await workspace.stop()
        current = read_json(info_path)
        if isinstance(current, dict) and current.get("pid") == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                info_path.unlink()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    log_format = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=logging.INFO, format=log_format)
    config = WorkspaceConfig(
        port=args.port,
        start_delay_s=args.start_delay,
        quota_cpu=args.quota_cpu,
        quota_memory=args.quota_memory,
        quota_gpu=args.quota_gpu,
        restart_attempts=args.restart_attempts,
        restart_delay_s=args.restart_delay,
        stop_grace_s=args.stop_grace,
        refuse_dot_folder_scripts=args.refuse_dot_folders,
    )
    asyncio.run(serve(args.data_dir, config))


if __name__ == "__main__":
    main()
