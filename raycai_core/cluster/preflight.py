"""The checks of `raycai doctor` that need no API call: each says what it found and the exact
fix. `up` and the TUI's create form run `up_checks` (files only: bring-up time does not move)
and refuse a spec when a check `blocks_up`, i.e. the cluster would certainly fail.

Statuses: ok, warn, fail, and info (cannot be checked; says why).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from raycai_core.cluster import phases
from raycai_core.cluster.records import NodeRecord
from raycai_core.naming import HEAD_NODE
from raycai_core.spec import ClusterSpec, NodeSpec

Status = Literal["ok", "warn", "fail", "info"]
MB = 2**20
# The launchers' own way of reading Ray's version without importing it (template.py).
VERSION_CODE = "import importlib.metadata as m; print(m.version('ray'))"
PYTHON_CODE = "import sys; print('%d.%d.%d' % sys.version_info[:3])"
SETUP_ENV = "raycai setup-env"


@dataclass(frozen=True)
class Check:
    name: str  # e.g. "shared-memory"
    status: Status
    found: str  # what was found, one line
    fix: str = ""  # the exact fix ("" when nothing to fix)
    cluster: str = ""  # the cluster (spec) it measured against, if any
    fixable: bool = False  # `raycai doctor --fix` applies it
    blocks_up: bool = False  # `raycai up` refuses the spec: the cluster would fail

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    def line(self) -> str:
        where = f" [{self.cluster}]" if self.cluster else ""
        text = f"{self.status.upper():<4}  {self.name}{where}: {self.found}"
        return text + (f" -- fix: {self.fix}" if self.fix else "")

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def refusal(checks: Iterable[Check]) -> str | None:
    """The doctor's message for every check that makes `up` refuse, or None."""
    lines = [check.line() for check in checks if check.blocks_up and check.failed]
    return "\n".join(lines) if lines else None


# -- Ray in the project venv ------------------------------------------------------------------


@dataclass(frozen=True)
class RayFound:
    entry: str  # the search entry (".venv", "PATH")
    ray: str  # the ray executable
    python: str  # the Python that runs it
    ray_version: str | None  # None: not read
    python_version: str | None


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _pyvenv_python(venv: Path) -> str | None:
    try:
        return pyvenv_version((venv / "pyvenv.cfg").read_bytes())
    except OSError:
        return None


def pyvenv_version(text: bytes | None) -> str | None:
    """The Python version a pyvenv.cfg names (`version_info`, else `version`)."""
    if text is None:
        return None
    lines = text.decode("utf-8", "replace").splitlines()
    values = dict(
        (key.strip(), value.strip()) for key, _, value in (line.partition("=") for line in lines)
    )
    return values.get("version_info") or values.get("version") or None


def _dist_info_ray(venv: Path) -> str | None:
    """Ray's version from its dist-info in the venv (a directory listing, no process)."""
    for site in venv.glob("lib/python*/site-packages"):
        for info in site.glob("ray-*.dist-info"):
            match = re.match(r"ray-(.+)\.dist-info$", info.name)
            if match:
                return match.group(1)
    return None


def _run(python: str, code: str) -> str | None:
    try:
        done = subprocess.run(
            [python, "-c", code],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    out = done.stdout.decode("utf-8", "replace").strip()
    return out if done.returncode == 0 and out else None


def _shebang_python(ray: str) -> str:
    try:
        with open(ray, "rb") as handle:
            first = handle.readline().decode("utf-8", "replace")
    except OSError:
        return ""
    words = first[2:].split() if first.startswith("#!") else []
    if words and os.path.basename(words[0]) == "env" and len(words) > 1:
        return shutil.which(words[1]) or ""
    return words[0] if words else ""


def find_ray(project_dir: Path, entry: str, *, run: bool) -> RayFound | str:
    """Ray for one `ray.search` entry as the launchers look for it, or why there is none.
    `run`: read versions by running the Python when its files do not say (doctor only)."""
    if entry == "PATH":
        ray = shutil.which("ray")
        if not ray:
            return "no `ray` on this PATH"
        python = _shebang_python(ray)
        venv = Path(python).parent.parent if python else None
    else:
        venv = project_dir / entry
        ray = str(venv / "bin" / "ray")
        python = str(venv / "bin" / "python")
        if not os.access(ray, os.X_OK):
            return f"no {entry}/bin/ray"
        if not os.path.isfile(python):
            return f"no {entry}/bin/python"
    ray_version = _dist_info_ray(venv) if venv else None
    python_version = _pyvenv_python(venv) if venv else None
    if run and python:
        ray_version = ray_version or _run(python, VERSION_CODE)
        python_version = python_version or _run(python, PYTHON_CODE)
    return RayFound(entry, ray, python, ray_version, python_version)


def runtime_python(kernel: str) -> str | None:
    """ "3.11" from a runtime's kernel ("Python 3.11"), or None."""
    match = re.search(r"Python\s+(\d+\.\d+)", kernel)
    return match.group(1) if match else None


def check_ray(
    project_dir: Path,
    spec: ClusterSpec,
    *,
    run: bool = False,
    runtime_kernels: Mapping[str, str] | None = None,
) -> Check:
    """Does a `ray.search` entry hold the spec's Ray, on a Python the runtimes run?
    Fails (and blocks `up`) when no entry can: every launcher would exit at `checking-ray`."""
    found = {entry: find_ray(project_dir, entry, run=run) for entry in spec.ray.search}
    return judge_ray(spec, found, runtime_kernels or {})


# An entry that cannot be looked at from here (the runtime's PATH, from outside the project).
UNKNOWN = "unknown"


def judge_ray(
    spec: ClusterSpec,
    found: Mapping[str, RayFound | str],
    kernels: Mapping[str, str],
) -> Check:
    """The first entry (in `ray.search` order) holding the spec's Ray decides; else fail,
    blocking `up`, unless an entry could not be looked at (`UNKNOWN: why`): a warning."""
    wanted = spec.ray.version
    tried: list[str] = []
    unknown = False
    for entry in spec.ray.search:
        each = found[entry]
        if isinstance(each, str):
            unknown = unknown or each.startswith(UNKNOWN)
            tried.append(f"{entry}: {each.removeprefix(UNKNOWN + ': ')}")
            continue
        if each.ray_version is not None and each.ray_version != wanted:
            tried.append(f"{entry}: Ray {each.ray_version}")
            continue
        return _python_against_runtimes(spec, each, kernels)
    fix = f"{SETUP_ENV} --ray-version {wanted}"
    if spec.ray.search != ("PATH",):
        fix += f" --venv {next(e for e in spec.ray.search if e != 'PATH')}"
    return Check(
        "ray",
        "warn" if unknown else "fail",
        f"Ray {wanted} not found where the launchers look ({'; '.join(tried)})",
        f"{fix} (it installs ray[default,serve]=={wanted} into the project venv)",
        cluster=spec.name,
        blocks_up=not unknown,
    )


def _python_against_runtimes(
    spec: ClusterSpec, found: RayFound, kernels: Mapping[str, str]
) -> Check:
    version = found.ray_version or "(version not read)"
    where = f"Ray {version} in {found.entry} ({found.ray}), Python {found.python_version or '?'}"
    if found.entry == "PATH":
        where += "; the applications' runtime PATH may differ from this one"
    if found.python_version:
        for node, runtime in _runtimes(spec).items():
            want = runtime_python(kernels.get(runtime, ""))
            if want and want != _minor(found.python_version):
                return Check(
                    "ray",
                    "fail",
                    f"{where}, but the runtime of {node} runs Python {want}: the venv's "
                    "Python is not there",
                    f"run `{SETUP_ENV}` in a session of that runtime (Python {want}), or "
                    f"choose a Python {_minor(found.python_version)} runtime",
                    cluster=spec.name,
                )
    return Check("ray", "ok", where, cluster=spec.name)


def _runtimes(spec: ClusterSpec) -> dict[str, str]:
    nodes: dict[str, NodeSpec] = {"the head": spec.head}
    nodes.update({f"group {name}": group for name, group in spec.groups.items()})
    return {node: n.runtime_identifier for node, n in nodes.items() if n.runtime_identifier}


def check_runtimes(spec: ClusterSpec, listed: Iterable[str]) -> Check:
    known = set(listed)
    missing = {node: r for node, r in _runtimes(spec).items() if r not in known}
    if not known:
        return Check(
            "runtimes",
            "fail",
            "the workspace lists no runtimes",
            "ask the workspace admin to enable a runtime",
            cluster=spec.name,
        )
    if missing:
        node, runtime = next(iter(missing.items()))
        return Check(
            "runtimes",
            "fail",
            f"{len(known)} runtimes listed; {node}'s runtime {runtime} is not one of them",
            "choose one of `raycai runtimes` (--runtime, or runtime_identifier in the spec)",
            cluster=spec.name,
        )
    return Check(
        "runtimes",
        "ok",
        f"{len(known)} runtimes listed; the spec's are present",
        cluster=spec.name,
    )


# -- shared memory, quota, workload credentials -----------------------------------------------


def needed_shared_memory_mb(spec: ClusterSpec | None) -> int:
    """What Ray's object store takes on the largest node (30 % of its memory, as Ray
    advises /dev/shm above that), in MB; `None`: a node of raycai's default sizes (what
    `raycai up NAME` and the TUI's form make unless told otherwise)."""
    return math.ceil(max(node.ray_object_store_bytes for node in _nodes(spec).values()) / MB)


def _nodes(spec: ClusterSpec | None) -> dict[str, NodeSpec]:
    if spec is None:
        return {"a node of raycai's default sizes": NodeSpec()}
    nodes: dict[str, NodeSpec] = {"the head": spec.head}
    nodes.update({f"group {name}": group for name, group in spec.groups.items()})
    return nodes


# Ray refuses to start a node whose object store is above this many bytes and larger than
# /dev/shm (ray_constants.REQUIRE_SHM_SIZE_THRESHOLD), unless the variable below is set;
# at or below it, the object store goes to /tmp with a warning in the node's log.
RAY_REQUIRE_SHM_BYTES = 10**10
SLOW_STORAGE_ENV = "RAY_OBJECT_STORE_ALLOW_SLOW_STORAGE"


def _refused_nodes(limit_mb: int, spec: ClusterSpec | None) -> list[str]:
    """The nodes whose `ray start` refuses with this much shared memory (see above)."""
    if spec is not None and spec.env.get(SLOW_STORAGE_ENV):
        return []
    return [
        node
        for node, each in _nodes(spec).items()
        if each.ray_object_store_bytes > max(RAY_REQUIRE_SHM_BYTES, limit_mb * MB)
    ]


def check_shared_memory(limit_mb: int | None, spec: ClusterSpec | None) -> Check:
    """The project's shared_memory_limit (MB of /dev/shm per engine) against the largest
    object store of the spec (None: raycai's default sizes, when there is no spec to
    measure against). Below it Ray falls back to /tmp (a failure the fix settles; `up`
    warns), or, for an object store above 10 GB, refuses to start the node (`up` refuses)."""
    needed = needed_shared_memory_mb(spec)
    largest = max(node.memory for node in _nodes(spec).values())
    name = spec.name if spec is not None else ""
    of = f"30 % of {largest:g} GB" + (
        ", the largest node"
        if spec is not None
        else ": no cluster spec given or in the project, so a node of raycai's default sizes"
    )
    if limit_mb is None:
        return Check(
            "shared-memory",
            "warn",
            "the workspace does not report the project's shared_memory_limit",
            f"set the project's shared memory to at least {needed} MB in its settings",
            cluster=name,
        )
    if limit_mb >= needed:
        return Check(
            "shared-memory",
            "ok",
            f"project shared_memory_limit {limit_mb} MB >= {needed} MB (Ray's object store: {of})",
            cluster=name,
        )
    found = (
        f"project shared_memory_limit {limit_mb} MB < {needed} MB that Ray's object store "
        f"needs ({of}): "
    )
    fix = (
        f"raycai doctor --fix (sets shared_memory_limit to {needed} MB; applications started "
        "afterwards get it)"
    )
    refused = _refused_nodes(limit_mb, spec)
    if refused:
        found += (
            f"Ray refuses to start {', '.join(refused)} (an object store above 10 GB "
            "and larger than /dev/shm)"
        )
        fix += f", or {SLOW_STORAGE_ENV}=1 in the spec's env to accept /tmp (slow)"
    else:
        found += "Ray falls back to /tmp (slow, it fills the disk)"
    return Check(
        "shared-memory",
        "fail",
        found,
        fix,
        cluster=name,
        fixable=True,
        blocks_up=bool(refused),
    )


def check_quota() -> Check:
    return Check(
        "quota",
        "info",
        "cannot be checked: the API v2 has no quota endpoint; an application over the "
        "user's quota waits in STARTING without a word",
        "if nodes stay STARTING, ask the workspace admin for more quota (CML's default "
        "is small: 2 vCPU, 8 GB)",
    )


def check_workload_key(has_key: bool | None, spec: ClusterSpec | None, how: str) -> Check:
    """CDSW_APIV2_KEY in the applications' environment (Ray's autoscaler on the head uses
    it; without it an autoscaled cluster keeps its minimum size). `has_key` None: unknown."""
    needs = spec is not None and any(group.autoscale for group in spec.groups.values())
    name = spec.name if spec is not None else ""
    fix = (
        "ask the workspace admin to give workloads API v2 keys (CDSW_APIV2_KEY); "
        "until then autoscaled groups stay at their minimum"
    )
    if has_key is None:
        return Check("workload-credentials", "info", f"not checked: {how}", cluster=name)
    if has_key:
        return Check("workload-credentials", "ok", f"CDSW_APIV2_KEY set ({how})", cluster=name)
    status: Status = "fail" if needs else "warn"
    return Check(
        "workload-credentials",
        status,
        f"no CDSW_APIV2_KEY in the applications' environment ({how}); Ray's autoscaler "
        "needs it" + ("" if needs else " (this spec does not autoscale)"),
        fix,
        cluster=name,
    )


def session_workload_key(environ: Mapping[str, str]) -> bool | None:
    """Inside a CML session, whether workloads get CDSW_APIV2_KEY (the session is one);
    None outside a session."""
    if not environ.get("CDSW_PROJECT_ID", "").strip():
        return None
    return bool(environ.get("CDSW_APIV2_KEY", "").strip())


def check_head_autoscaler(name: str, head: NodeRecord | None) -> Check | None:
    """An existing cluster whose head turned its autoscaler off for want of workload
    credentials (the launcher's own check of CDSW_APIV2_KEY); None when it did not."""
    auto = head.autoscaler if head is not None else None
    if auto is None or auto.state != "off" or "CDSW_APIV2_KEY" not in (auto.reason or ""):
        return None
    return Check(
        "workload-credentials",
        "fail",
        f"the head's autoscaler is off: {auto.reason}",
        "ask the workspace admin to give workloads API v2 keys, then restart the head "
        f"(`raycai down {name}` and `raycai up`); until then its groups stay at their minimum",
        cluster=name,
    )


# -- an existing cluster: app -> app reachability ---------------------------------------------


def check_reachability(name: str, records: Mapping[str, NodeRecord], now: float) -> Check:
    """Workers joined = the pods reach the head; a worker waiting for a running head whose
    address it has read says they cannot reach each other."""
    head = records.get(HEAD_NODE)
    workers = {node: r for node, r in records.items() if node != HEAD_NODE}
    head_up = head is not None and head.phase == phases.RUNNING and not phases.is_stale(head, now)
    joined = [n for n, r in workers.items() if r.phase in (phases.JOINED, phases.DRAINING)]
    stuck = [
        n
        for n, r in workers.items()
        if r.phase == phases.WAITING_FOR_HEAD and not phases.is_stale(r, now)
    ]
    if not head_up:
        return Check(
            "reachability",
            "info",
            f"not measured: the head is not running ({head.phase if head else 'no record'})",
            f"`raycai status {name}`",
            cluster=name,
        )
    if stuck:
        return Check(
            "reachability",
            "fail",
            f"{', '.join(sorted(stuck))} waiting for the head while it runs "
            f"({len(joined)} joined): the applications' pods cannot reach each other",
            "ask the workspace admin whether a network policy blocks pod-to-pod TCP "
            "between the project's applications (Ray's ports 6379, 10001, 8265 and the "
            "node ports)",
            cluster=name,
        )
    if not workers:
        return Check("reachability", "info", "no worker to measure with", cluster=name)
    return Check(
        "reachability",
        "ok",
        f"{len(joined)} of {len(workers)} worker(s) joined the head",
        cluster=name,
    )


# -- what `up` and the create form run ---------------------------------------------------------


def up_checks(
    project_dir: Path,
    spec: ClusterSpec,
    environ: Mapping[str, str] | None = None,
    *,
    shared_memory_mb: int | None = None,
    runtime_kernels: Mapping[str, str] | None = None,
) -> list[Check]:
    """The checks that create nothing and call nothing (files, this environment, and what
    the caller already fetched): a failed `blocks_up` check refuses the spec, the others
    are warnings. Only problems are returned."""
    env = os.environ if environ is None else environ
    checks = [check_ray(project_dir, spec, runtime_kernels=runtime_kernels)]
    if any(group.autoscale for group in spec.groups.values()):
        has_key = session_workload_key(env)
        if has_key is False:
            checks.append(check_workload_key(False, spec, "this session has none"))
    if shared_memory_mb is not None:
        checks.append(check_shared_memory(shared_memory_mb, spec))
    return [check for check in checks if check.status in ("warn", "fail")]
