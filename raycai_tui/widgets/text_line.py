"""Show text in a Static at the least cost: nothing when it shows that text already, a
repaint of the widget alone when its size cannot change.

Textual's `Static.update` lays the whole screen out again (and repaints what moved) each
time. A poll that shows the same title again, or a status line whose clock moved, needs
neither: on an idle dashboard that is most of the CPU it uses.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual.visual import VisualType
from textual.widgets import Static


def same_text(a: Text, b: Text) -> bool:
    """Equal as shown (rich's `==` compares the characters and spans, not the base style)."""
    return (
        a.plain == b.plain
        and a.spans == b.spans
        and a.style == b.style
        and (a.justify, a.overflow, a.no_wrap, a.end) == (b.justify, b.overflow, b.no_wrap, b.end)
    )


def one_line(widget: Static, content: VisualType) -> bool:
    """Whether `content` is one line within the widget's current width (it cannot wrap)."""
    if not isinstance(content, Text) or "\n" in content.plain:
        return False
    width = widget.content_region.width
    return width > 0 and cell_len(content.plain) <= width


def size_depends_on_content(widget: Static, before: VisualType, after: VisualType) -> bool:
    styles = widget.styles
    if styles.width is not None and styles.width.is_auto:
        return True
    if styles.height is not None and not styles.height.is_auto:
        return False  # a fixed or fractional height: the text never changes it
    return not (one_line(widget, before) and one_line(widget, after))


def show_text(widget: Static, text: Text) -> None:
    """Put `text` in `widget`, laying the screen out again only if the widget may resize."""
    shown = widget.content
    if isinstance(shown, Text) and same_text(shown, text):
        return
    widget.update(text, layout=size_depends_on_content(widget, shown, text))
