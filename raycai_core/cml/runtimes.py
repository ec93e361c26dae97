"""Which of the workspace's runtimes this CML session runs on (to preselect it in forms).

A runtime image sets ML_RUNTIME_EDITOR, ML_RUNTIME_KERNEL, ML_RUNTIME_EDITION and
ML_RUNTIME_FULL_VERSION (or ML_RUNTIME_SHORT_VERSION) in every session it runs; the
runtimes API lists the same metadata next to each image identifier.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from raycai_core.cml.models import Runtime


def session_runtime(
    runtimes: Sequence[Runtime], environ: Mapping[str, str] | None = None
) -> Runtime | None:
    """The runtime whose metadata matches this session's, or None outside a session or
    when the match is not unique."""
    env = os.environ if environ is None else environ
    editor = env.get("ML_RUNTIME_EDITOR", "").strip()
    kernel = env.get("ML_RUNTIME_KERNEL", "").strip()
    edition = env.get("ML_RUNTIME_EDITION", "").strip()
    if not (editor and kernel and edition):
        return None
    matches = [r for r in runtimes if (r.editor, r.kernel, r.edition) == (editor, kernel, edition)]
    full = env.get("ML_RUNTIME_FULL_VERSION", "").strip()
    short = env.get("ML_RUNTIME_SHORT_VERSION", "").strip()
    if full:
        matches = [r for r in matches if r.full_version == full] or matches
    if short and len(matches) > 1:
        matches = [r for r in matches if r.full_version.startswith(short)] or matches
    return matches[0] if len(matches) == 1 else None
