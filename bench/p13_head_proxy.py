"""P13: the head proxy's hop (the head application's port) against Ray Serve's own port.

One cluster (a head alone, on the local workspace, in a private network namespace) runs a
Serve application whose handler takes about 10 ms (`await asyncio.sleep(0.01)`), deployed
with `raycai serve deploy`. Serve listens on the head's loopback only (127.0.0.1:serve_port,
HeadOnly): "direct" is that address, from inside the namespace; "head proxy" is the head's
pod address and application port (127.0.0.N:app_port/serve/..., the Ray token in
X-Ray-Authorization), the hop a client of the project pays. 16 concurrent keep-alive
clients per target (aiohttp, one child process: no GIL shared with the workspace), every
connection opened and warmed first; then rounds in which each target in turn gets all 16
clients for SLICE_S (1 s), the order reversing each round (A B C, C B A), --seconds per
target in all. Short turns in one process keep the targets side by side in time: the
machine's drift (Serve's own pauses, other work) lands on all of them alike. Targets:
median latency overhead (proxy minus direct) <= 2 ms, throughput ratio (proxy / direct) >= 0.9.

Apart (no target; it stands in for CML's ingress): the local workspace's application URL
`http://<subdomain>.localhost:<port>/serve/...` with the workspace key and the token (two
hops: the ingress, then the head proxy), in the same rotation.

The load generator's own CPU competes with Serve, the proxies and the other work of the
machine for its cores (2 here): both sides of each comparison pay it alike.

Usage: python bench/p13_head_proxy.py [--seconds S] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from _common import Report, ensure_private_netns, load_average, median, short_tmpdir

if TYPE_CHECKING:
    from raycai_core.local import WorkspaceHandle

NAME = "p13"
CLIENTS = 16
SLICE_S = 1.0  # one target's turn in a round: short, so that drift hits all alike
OVERHEAD_TARGET_MS = 2.0
THROUGHPUT_TARGET = 0.9
BIN = Path(sys.executable).parent
HERE = Path(__file__).resolve()
APP = """
import asyncio

from ray import serve


@serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.1})
class Sleepy:
    async def __call__(self, request) -> str:
        await asyncio.sleep(0.01)
        return "ok"


app = Sleepy.bind()
"""
CONFIG = """applications:
  - name: sleepy
    route_prefix: /sleepy
    import_path: p13_app:app
    runtime_env:
      working_dir: "."
"""


# -- the load generator (a child process) ----------------------------------------------------------


async def load(targets: list[dict], slice_s: float, slices: int, clients: int) -> dict:
    """`clients` keep-alive connections to every target, opened and warmed first; then
    `slices` rounds in which each target in turn gets all `clients` for `slice_s`, each
    client sending its next request when the last one answered. The order reverses each
    round (A B C, C B A, ...), so every target meets the same drift of the machine. Every
    latency (s) per target and round, the time each target was loaded, the errors."""
    import aiohttp

    sessions = [
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=clients, force_close=False),
            headers=target["headers"],
        )
        for target in targets
    ]
    latencies: list[list[list[float]]] = [[] for _ in targets]
    elapsed = [0.0 for _ in targets]
    errors: list[str] = []
    failed = [0 for _ in targets]

    async def one(index: int) -> None:
        async with sessions[index].get(targets[index]["url"]) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"{response.status}")

    async def loaded(index: int) -> None:
        stop = time.perf_counter() + slice_s
        got: list[float] = []

        async def client() -> None:
            while (started := time.perf_counter()) < stop:
                try:
                    await one(index)
                except Exception as exc:
                    failed[index] += 1
                    errors.append(repr(exc))
                    continue
                got.append(time.perf_counter() - started)

        begin = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed[index] += time.perf_counter() - begin
        latencies[index].append(got)

    try:
        for index in range(len(targets)):  # open and warm every connection
            for _ in range(2):
                await asyncio.gather(*(one(index) for _ in range(clients)))
        order = list(range(len(targets)))
        for number in range(slices):
            for index in order if number % 2 == 0 else order[::-1]:
                await loaded(index)
    finally:
        for session in sessions:
            await session.close()
    return {"latencies": latencies, "elapsed": elapsed, "errors": errors[:5], "failed": failed}


def client_main(argv: list[str]) -> None:
    targets, slice_s = json.loads(argv[0]), float(argv[1])
    slices, clients = int(argv[2]), int(argv[3])
    print(json.dumps(asyncio.run(load(targets, slice_s, slices, clients))))


# -- the cluster -----------------------------------------------------------------------------------


def cli_env(handle: WorkspaceHandle) -> dict[str, str]:
    dropped = ("CML_", "CDSW_", "RAYCAI_", "RAY_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env.update(
        CML_HOST=handle.url,
        CML_API_KEY=handle.api_key,
        CML_PROJECT_ID=handle.project_id,
        RAYCAI_PROJECT_DIR=str(handle.project_dir),
    )
    return env


def raycai(handle: WorkspaceHandle, *args: str) -> str:
    done = subprocess.run(
        [str(BIN / "raycai"), *args], env=cli_env(handle), capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"raycai {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


@dataclass
class Target:
    name: str
    url: str
    headers: dict[str, str]
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    failed: int = 0

    @property
    def median_ms(self) -> float:
        return median(self.latencies) * 1000

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0


def run_rounds(chosen: list[Target], slice_s: float, slices: int, clients: int) -> None:
    """Loads the targets in turn from one child process (see `load`), adding to each."""
    spec = json.dumps([{"url": t.url, "headers": t.headers} for t in chosen])
    argv = [sys.executable, str(HERE), "--client", spec, str(slice_s), str(slices), str(clients)]
    budget = slice_s * slices * len(chosen) * 1.5 + 60
    done = subprocess.run(argv, capture_output=True, text=True, timeout=budget)
    if done.returncode != 0:
        raise SystemExit(f"the load generator failed:\n{done.stderr}")
    result = json.loads(done.stdout)
    for index, target in enumerate(chosen):
        rounds = result["latencies"][index]
        if not any(rounds):
            raise SystemExit(f"no answer from {target.name} ({target.url}): {result['errors']}")
        for got in rounds:
            target.latencies += got
        target.elapsed += result["elapsed"][index]
        target.failed += result["failed"][index]
        these = [latency for got in rounds for latency in got]
        failed = result["failed"][index]
        print(
            f"  {target.name:<28} {len(these) / result['elapsed'][index]:7.1f} req/s, "
            f"median {median(these) * 1000:6.2f} ms"
            + (f", {failed} failed {result['errors']}" if failed else ""),
            flush=True,
        )


def process_cpu_s(marker: str) -> float:
    """utime + stime (s) of every live process whose command line contains `marker`."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker not in (entry / "cmdline").read_bytes().decode(errors="replace"):
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


# Whose CPU each request costs: the head proxy (its program), and Serve's own path (its
# proxy actor and the replica; the controller and the rest of Ray are left out).
HEAD_PROXY = "raycai_head_proxy.py"
SERVE_PATH = ("ray::ProxyActor", "ray::ServeReplica")


def targets(handle: WorkspaceHandle) -> list[Target]:
    from raycai_core.cluster.layout import ClusterPaths

    paths = ClusterPaths(handle.project_dir, NAME)
    head = json.loads(paths.head_json.read_text())
    token = {"X-Ray-Authorization": f"Bearer {paths.auth_token.read_text().strip()}"}
    (app,) = json.loads(raycai(handle, "serve", "status", NAME, "--json"))["applications"]
    ingress = app["cml_url"].split("://", 1)[1]  # <subdomain>.localhost:<port>/serve/sleepy
    host, path = ingress.split("/", 1)
    port = host.rsplit(":", 1)[1]
    workspace = {"Host": host, "Authorization": f"Bearer {handle.api_key}", **token}
    return [
        Target("direct (Serve's port)", f"http://127.0.0.1:{head['serve_port']}/sleepy", {}),
        Target(
            "head proxy (app port)", f"http://{head['ip']}:{head['app_port']}/serve/sleepy", token
        ),
        Target("ingress + head proxy", f"http://127.0.0.1:{port}/{path}", workspace),
    ]


async def bring_up(handle: WorkspaceHandle) -> None:
    from raycai_core.cluster.lifecycle import ClusterManager
    from raycai_core.cml.client import CMLClient
    from raycai_core.local.config import DEFAULT_RUNTIMES
    from raycai_core.spec import spec_from_flags

    spec = spec_from_flags(
        name=NAME,
        runtime=DEFAULT_RUNTIMES[0]["image_identifier"],
        workers=0,
        cpu=1,
        memory=1,
        head_cpu=2,
        head_memory=2,
    )
    async with CMLClient(handle.credentials()) as cml:
        ops = ClusterManager(cml, handle.project_dir)
        try:
            await ops.up(spec, timeout=300)
        finally:
            await ops.observer.aclose()


async def bring_down(handle: WorkspaceHandle) -> None:
    from raycai_core.cluster.lifecycle import ClusterManager
    from raycai_core.cml.client import CMLClient

    async with CMLClient(handle.credentials()) as cml:
        ops = ClusterManager(cml, handle.project_dir)
        try:
            await ops.down(NAME)
        finally:
            await ops.observer.aclose()


CPU_PER_REQUEST: dict[str, float] = {}  # s of CPU per request, filled by measure()


def measure(handle: WorkspaceHandle, seconds: float) -> list[Target]:
    folder = handle.project_dir / "p13"
    folder.mkdir()
    (folder / "p13_app.py").write_text(APP)
    (folder / "serve_config.yaml").write_text(CONFIG)
    raycai(handle, "serve", "deploy", NAME, str(folder / "serve_config.yaml"))
    chosen = targets(handle)
    slices = max(1, round(seconds / SLICE_S))
    print(f"{CLIENTS} clients, {slices} rounds of {SLICE_S:g} s per target:", flush=True)
    proxy_before = process_cpu_s(HEAD_PROXY)
    serve_before = sum(map(process_cpu_s, SERVE_PATH))
    run_rounds(chosen, SLICE_S, slices, CLIENTS)
    _direct, proxy, ingress = chosen
    CPU_PER_REQUEST["head proxy"] = (process_cpu_s(HEAD_PROXY) - proxy_before) / (
        len(proxy.latencies) + len(ingress.latencies)  # the ingress's go through it too
    )
    CPU_PER_REQUEST["Serve"] = (sum(map(process_cpu_s, SERVE_PATH)) - serve_before) / sum(
        len(target.latencies) for target in chosen
    )
    alone = [Target(f"{t.name}, 1 client", t.url, t.headers) for t in chosen[:2]]
    print(f"1 client, {max(1, slices // 3)} rounds of {SLICE_S:g} s per target:", flush=True)
    run_rounds(alone, SLICE_S, max(1, slices // 3), 1)  # the hop alone: Serve not saturated
    return chosen + alone


def main() -> None:
    if sys.argv[1:2] == ["--client"]:
        client_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="load per target, s")
    parser.add_argument("--quick", action="store_true", help="6 s per target")
    args = parser.parse_args()
    ensure_private_netns()
    from raycai_core.local import WorkspaceConfig, run_workspace_in_thread

    seconds = 6.0 if args.quick else args.seconds
    load_before = load_average()
    with short_tmpdir("p13-") as tmp:
        config = WorkspaceConfig(stop_grace_s=10.0)
        with run_workspace_in_thread(tmp / "ws", config) as handle:
            started = time.monotonic()
            asyncio.run(bring_up(handle))
            print(f"cluster up in {time.monotonic() - started:.1f} s", file=sys.stderr)
            try:
                direct, proxy, ingress, direct1, proxy1 = measure(handle, seconds)
            finally:
                asyncio.run(bring_down(handle))

    report = Report("P13 head proxy hop: head app port (proxy) vs Serve's port (direct)")
    report.notes.append(
        f"handler ~10 ms (asyncio.sleep), {CLIENTS} keep-alive clients (aiohttp, one child "
        f"process), {seconds:g} s per target in turns of {SLICE_S:g} s (A B C, C B A, ...); "
        f"a 2-CPU head, no worker; "
        f"{load_before} at the start"
    )
    report.notes.append(
        "direct = 127.0.0.1:serve_port (Serve listens on loopback only); proxy = "
        "<head pod address>:app_port/serve/... with the token"
    )
    for target in (direct, proxy, ingress, direct1, proxy1):
        report.notes.append(
            f"{target.name}: {target.rps:.1f} req/s, median {target.median_ms:.2f} ms, "
            f"p90 {sorted(target.latencies)[int(len(target.latencies) * 0.9)] * 1000:.2f} ms, "
            f"{len(target.latencies)} requests, {target.failed} failed"
        )
    report.add(
        "median latency overhead, head proxy - direct",
        proxy.median_ms - direct.median_ms,
        OVERHEAD_TARGET_MS,
        " ms",
    )
    hop, serve = CPU_PER_REQUEST["head proxy"], CPU_PER_REQUEST["Serve"]
    report.notes.append(
        f"CPU per request (16-client turns): the head proxy {hop * 1e6:.0f} us, Serve's proxy "
        f"actor and replica {serve * 1e6:.0f} us ({hop / serve:.1%}): at saturation the CPU "
        f"the hop takes is what Serve loses"
    )
    report.add(
        "throughput ratio, head proxy / direct",
        proxy.rps / direct.rps,
        THROUGHPUT_TARGET,
        "x",
        lower_is_better=False,
    )
    report.add(
        "1 client: median latency overhead, head proxy - direct",
        proxy1.median_ms - direct1.median_ms,
        None,
        " ms",
    )
    report.add(
        "ingress + head proxy: median overhead vs direct (apart)",
        ingress.median_ms - direct.median_ms,
        None,
        " ms",
    )
    report.add(
        "ingress + head proxy: throughput / direct (apart)",
        ingress.rps / direct.rps,
        None,
        "x",
        lower_is_better=False,
    )
    report.finish()


if __name__ == "__main__":
    main()
