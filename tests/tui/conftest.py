"""Fixtures of the raycai-tui tests (defined in tests/tui/support.py)."""

from tests.tui.support import fake_ray, notifications_kept, tui_workspace

__all__ = ["fake_ray", "notifications_kept", "tui_workspace"]
