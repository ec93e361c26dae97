"""A stand-in for `ray start --block`, for benchmarks whose subject is not Ray itself.

It behaves, as seen from raycai, as Ray does: the head listens on its GCS port and serves the
dashboard routes raycai reads (`/api/v0/nodes`, `/api/cluster_status`, token-checked like
Ray's); a worker connects to the head's GCS port, registers under its --node-name, prints
"Ray runtime started." and blocks; SIGTERM ends either. Standard library only.
Install it as `<venv>/bin/ray` (see `install`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

NODES: dict[str, dict] = {}
LOCK = threading.Lock()


def option(argv: list[str], name: str, default: str | None = None) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else default


def token() -> str | None:
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    return Path(path).read_text().strip() if path else None


def node(name: str, ip: str, head: bool, cpus: float) -> dict:
    return {
        "node_id": uuid.uuid4().hex,
        "node_ip": ip,
        "node_name": name,
        "is_head_node": head,
        "state": "ALIVE",
        "state_message": None,
        "labels": {},
        "resources_total": {"CPU": cpus, "memory": 1e9},
        "start_time_ms": int(time.time() * 1000),
        "end_time_ms": 0,
    }


class Dashboard(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        expected = token()
        authorized = self.headers.get("Authorization") == f"Bearer {expected}"
        if self.path.startswith("/api/") and expected and not authorized:
            self.send_error(401)
            return
        if self.path.startswith("/api/v0/nodes"):
            with LOCK:
                items = list(NODES.values())
            body = {
                "result": True,
                "msg": "",
                "data": {
                    "result": {"total": len(items), "num_filtered": len(items), "result": items}
                },
            }
        elif self.path.startswith("/api/cluster_status"):
            body = {"result": True, "msg": "", "data": {"clusterStatus": None}}
        else:
            body = {"ok": True}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def serve_gcs(ip: str, port: int) -> None:
    listener = socket.create_server(("0.0.0.0", port), reuse_port=False)

    def handle(conn: socket.socket) -> None:
        data = conn.makefile("r").readline().strip()
        if not data:
            return
        name, node_ip, cpus = data.split(" ")
        entry = node(name, node_ip, False, float(cpus))
        with LOCK:
            NODES[entry["node_id"]] = entry
        try:
            conn.recv(1)  # blocks until the worker goes away
        finally:
            with LOCK:
                entry["state"] = "DEAD"

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    ip = option(argv, "--node-ip-address", "127.0.0.1") or "127.0.0.1"
    name = option(argv, "--node-name", "node") or "node"
    cpus = float(option(argv, "--num-cpus", "1") or 1)
    if "--head" in argv:
        gcs = int(option(argv, "--port", "6379") or 6379)
        dash = int(option(argv, "--dashboard-port", "8265") or 8265)
        NODES["head"] = node(name, ip, True, cpus)
        threading.Thread(target=serve_gcs, args=(ip, gcs), daemon=True).start()
        server = ThreadingHTTPServer(("0.0.0.0", dash), Dashboard)
        print("Ray runtime started.", flush=True)
        server.serve_forever()
        return 0
    address = option(argv, "--address", "") or ""
    host, port = address.rsplit(":", 1)
    conn = socket.create_connection((host, int(port)), timeout=10)
    conn.sendall(f"{name} {ip} {cpus}\n".encode())
    print("Ray runtime started.", flush=True)
    conn.settimeout(None)
    conn.recv(1)  # the head went away: exit as Ray does
    return 1


def install(venv: Path) -> None:
    """Make `venv` look like a project virtualenv with this stand-in as its Ray."""
    bin_dir = venv / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    python = bin_dir / "python"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    ray = bin_dir / "ray"
    ray.write_text(
        f"#!{sys.executable}\nimport runpy, sys\nsys.argv[0] = {str(__file__)!r}\n"
        f"runpy.run_path({str(__file__)!r}, run_name='__main__')\n"
    )
    for path in (python, ray):
        path.chmod(0o755)


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["start"]:
        args = args[1:]
    sys.exit(main(args))
