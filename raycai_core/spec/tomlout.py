"""A spec as TOML (spec_to_toml): what `raycai` writes and load_spec_text reads back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from raycai_core.naming import DEFAULT_GROUP

if TYPE_CHECKING:
    from raycai_core.spec.cluster import ClusterSpec


def spec_to_toml(spec: ClusterSpec) -> str:
    """The spec as a TOML document that load_spec_text reads back to an equal spec."""
    import json

    def value(item: Any) -> str:
        if isinstance(item, bool):
            return "true" if item else "false"
        if isinstance(item, (int, float)):
            return repr(item)
        if isinstance(item, (list, tuple)):
            return "[" + ", ".join(value(part) for part in item) + "]"
        if isinstance(item, Mapping):
            pairs = (f"{json.dumps(str(k))} = {value(v)}" for k, v in item.items())
            return "{" + ", ".join(pairs) + "}"
        return json.dumps(str(item))  # a JSON string is a valid TOML basic string

    def table(header: str, items: Mapping[str, Any]) -> list[str]:
        return [f"[{header}]", *(f"{key} = {value(item)}" for key, item in items.items()), ""]

    data = spec.model_dump()
    lines = [f"name = {value(data['name'])}", f"healing = {value(data['healing'])}"]
    if data.get("idle_suspend_minutes") is not None:
        lines.append(f"idle_suspend_minutes = {value(data['idle_suspend_minutes'])}")
    lines.append("")
    lines += table("head", data["head"])
    if spec.group_names == (DEFAULT_GROUP,):
        lines += table("workers", data["workers"])
    else:
        for name, group in data["workers"].items():
            lines += table(f"workers.{name}", group)
        lines += table("autoscaling", data["autoscaling"])
    lines += table("ray", data["ray"])
    if "serve" in data:  # only when not the default (see ClusterSpec's serializer)
        lines += table("serve", data["serve"])
    lines.append("[env]")
    lines.extend(f"{json.dumps(key)} = {value(item)}" for key, item in data["env"].items())
    return "\n".join(lines) + "\n"
