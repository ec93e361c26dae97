"""A user keymap: binding id -> keys, from a TOML file, for `App.set_keymap`.

    # ~/.config/raycai/keys.toml
    "clusters.new" = "a"              # one key
    "cluster.scale_up" = ["plus", "u"]  # several keys
    [keymap]                          # or the same pairs under a [keymap] table

Binding ids are shown by `?` (help) next to each key.
"""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


class KeymapError(ValueError):
    pass


def parse_keymap(text: str, source: str = "keymap") -> dict[str, str]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise KeymapError(f"{source} is not valid TOML: {exc}") from None
    table = data.get("keymap", data)
    if not isinstance(table, dict):
        raise KeymapError(f"{source}: [keymap] must be a table of binding id = keys")
    keymap: dict[str, str] = {}
    for binding_id, keys in table.items():
        if isinstance(keys, str) and keys.strip():
            keymap[binding_id] = keys.strip()
        elif isinstance(keys, list) and keys and all(isinstance(k, str) and k for k in keys):
            keymap[binding_id] = ",".join(k.strip() for k in keys)
        else:
            raise KeymapError(
                f'{source}: {binding_id!r} must be a key like "ctrl+n" or a list of keys'
            )
    return keymap


def load_keymap(path: str | Path) -> dict[str, str]:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeymapError(f"cannot read keymap {file}: {exc.strerror or exc}") from None
    return parse_keymap(text, str(file))
