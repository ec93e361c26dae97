"""A log view that keeps a bounded ring of lines and renders only the rows on screen.

Lines arrive in batches (`append`, one refresh per batch). The ring keeps at most `max_lines`
lines and `max_chars` characters; the oldest go first. An index of the displayed lines (all of
them, or only those matching the filter) with their cumulative row ends maps a screen row to
(line, piece of a wrapped line) by bisection, so a frame costs O(rows on screen * log n)
whatever the buffer holds. Rebuilding that index (wrap, filter, width change) is O(n).
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Iterable, Sequence
from itertools import accumulate, islice
from typing import ClassVar

from rich.cells import cell_len, chop_cells
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.cache import LRUCache
from textual.geometry import Size
from textual.reactive import var
from textual.scroll_view import ScrollView
from textual.strip import Strip

DEFAULT_MAX_LINES = 20_000
DEFAULT_MAX_CHARS = 16 * 2**20
MAX_LINE_CHARS = 8192  # longer lines are cut: the buffer's bound must hold whatever arrives
MAX_SPANS = 64  # highlighted matches per line

# ANSI CSI and OSC sequences are dropped; any other control character shows as U+FFFD.
_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|[\x00-\x1f\x7f]")


def _control(match: re.Match[str]) -> str:
    return "" if len(match.group()) > 1 else "\ufffd"


def clean_line(line: str, max_chars: int = MAX_LINE_CHARS) -> str:
    """A line safe to render: tabs expanded, escapes and control characters removed, cut."""
    if not line.isprintable():
        line = _CONTROL.sub(_control, line.expandtabs())
    if len(line) > max_chars:
        line = line[:max_chars] + "…"
    return line


def clean_lines(lines: Iterable[str], max_chars: int = MAX_LINE_CHARS) -> list[str]:
    return [clean_line(line, max_chars) for line in lines]


class Marker(str):
    """A line the view's owner adds (lines skipped, file truncated, stream lost): styled apart.

    `skipped` is how many lines of the source this marker stands for.
    """

    skipped: int

    def __new__(cls, text: str, skipped: int = 0) -> Marker:
        marker = super().__new__(cls, text)
        marker.skipped = skipped
        return marker


NODE_COLORS = 8  # colors of node names in merged logs (log-view--node-0 ... -7)


class Prefixed(str):
    """A line that starts with the name of the node it comes from (all nodes' logs merged).

    The first `prefix` characters (the name) show in node color `color` (0..NODE_COLORS-1).
    Both are class attributes (see `prefixed`): a line costs what a plain str costs.
    """

    __slots__ = ()
    prefix: ClassVar[int] = 0
    color: ClassVar[int] = 0


_PREFIXED: dict[tuple[int, int], type[Prefixed]] = {}


def prefixed(text: str, prefix: int, color: int) -> Prefixed:
    """`text` as a Prefixed line: its first `prefix` characters in node color `color`."""
    key = (prefix, color % NODE_COLORS)
    kind = _PREFIXED.get(key)
    if kind is None:
        namespace = {"__slots__": (), "prefix": key[0], "color": key[1]}
        kind = _PREFIXED[key] = type(f"Prefixed{key[0]}c{key[1]}", (Prefixed,), namespace)
    return kind(text)


def skip_marker(count: int, *, estimated: bool = False) -> Marker:
    about = "about " if estimated else ""
    return Marker(f"… {about}{count:,} lines skipped …", skipped=count)


def compile_filter(query: str) -> re.Pattern[str] | None:
    """A regex when `query` is one, else the literal text; case-insensitive unless it has
    capitals. None for an empty query."""
    if not query:
        return None
    flags = 0 if any(c.isupper() for c in query) else re.IGNORECASE
    try:
        return re.compile(query, flags)
    except re.error:
        return re.compile(re.escape(query), flags)


def _cells(line: str) -> int:
    return len(line) if line.isascii() else cell_len(line)


def _piece(line: str, width: int, piece: int) -> tuple[str, int]:
    """Piece `piece` of `line` wrapped at `width` cells, and where it starts in `line`."""
    if line.isascii():
        start = piece * width
        return line[start : start + width], start
    pieces = chop_cells(line, width)
    if piece >= len(pieces):
        return "", len(line)
    return pieces[piece], sum(map(len, pieces[:piece]))


def _wrapped_rows(line: str, width: int) -> int:
    return 1 if cell_len(line) <= width else len(chop_cells(line, width))


class LineRing:
    """The last lines of a source, by sequence number (0 for the first line ever added)."""

    def __init__(self, max_lines: int, max_chars: int) -> None:
        self.max_lines = max(1, max_lines)
        self.max_chars = max_chars
        self._lines: deque[str] = deque()
        self.first = 0  # sequence number of the oldest kept line
        self.chars = 0

    def __len__(self) -> int:
        return len(self._lines)

    @property
    def next(self) -> int:
        """The sequence number the next line will get."""
        return self.first + len(self._lines)

    def __getitem__(self, seq: int) -> str:
        return self._lines[seq - self.first]

    def extend(self, lines: Sequence[str]) -> None:
        self._lines.extend(lines)
        self.chars += sum(map(len, lines))
        kept = self._lines
        while len(kept) > self.max_lines or (self.chars > self.max_chars and len(kept) > 1):
            self.chars -= len(kept.popleft())
            self.first += 1

    def clear(self) -> None:
        self.first = self.next
        self._lines.clear()
        self.chars = 0

    def snapshot(self) -> list[str]:
        return list(self._lines)


class RowIndex:
    """Displayed lines (sequence numbers, ascending) and the row each one ends at.

    Row ends are absolute (they only grow); `base` is where the first kept entry starts, so
    dropping old entries is a bisection and an offset, not a renumbering.
    """

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.ends: list[int] = []
        self.head = 0
        self.base = 0

    def __len__(self) -> int:
        return len(self.seqs) - self.head

    @property
    def rows(self) -> int:
        return self.ends[-1] - self.base if len(self) else 0

    def extend(self, seqs: Iterable[int], rows: Iterable[int] | None = None) -> None:
        """Add lines at the end; `rows` per line, or one row each when None."""
        seqs = list(seqs)
        end = self.ends[-1] if self.ends else self.base
        self.seqs.extend(seqs)
        if rows is None:
            self.ends.extend(range(end + 1, end + len(seqs) + 1))
        else:
            self.ends.extend(islice(accumulate(rows, initial=end), 1, None))

    def prune(self, first_seq: int) -> int:
        """Drop lines older than `first_seq`; returns the rows they took."""
        k = bisect_left(self.seqs, first_seq, lo=self.head)
        if k == self.head:
            return 0
        old_base, self.base, self.head = self.base, self.ends[k - 1], k
        if self.head > 4096 and 2 * self.head > len(self.seqs):
            del self.seqs[: self.head]
            del self.ends[: self.head]
            self.head = 0
        return self.base - old_base

    def locate(self, row: int) -> tuple[int, int] | None:
        """(sequence number, row within that line) shown at `row`, or None past the end."""
        if row < 0 or row >= self.rows:
            return None
        target = self.base + row
        k = bisect_right(self.ends, target, lo=self.head)
        start = self.ends[k - 1] if k > self.head else self.base
        return self.seqs[k], target - start

    def row_of(self, seq: int) -> int:
        """First row of the first displayed line at or after `seq`."""
        k = bisect_left(self.seqs, seq, lo=self.head)
        return (self.ends[k - 1] if k > self.head else self.base) - self.base


class LogView(ScrollView, can_focus=True):
    """Shows a bounded buffer of log lines; follow, wrap, filter highlight, only matches."""

    COMPONENT_CLASSES = {"log-view--match", "log-view--marker"} | {
        f"log-view--node-{i}" for i in range(NODE_COLORS)
    }
    DEFAULT_CSS = """
    LogView {
        background: $surface;
        color: $text;
        overflow-y: scroll;
        overflow-x: auto;
        &.-wrap { overflow-x: hidden; }
        &:focus { background-tint: $foreground 5%; }
        & > .log-view--match { background: $warning 70%; color: $text; text-style: bold; }
        & > .log-view--marker { color: $text-muted; text-style: italic; }
        /* Node names in merged logs: mid tones that read on dark and light backgrounds. */
        & > .log-view--node-0 { color: #3b9ee8; text-style: bold; }
        & > .log-view--node-1 { color: #4caf50; text-style: bold; }
        & > .log-view--node-2 { color: #d9822b; text-style: bold; }
        & > .log-view--node-3 { color: #ab6adb; text-style: bold; }
        & > .log-view--node-4 { color: #1fb5a8; text-style: bold; }
        & > .log-view--node-5 { color: #d65c8e; text-style: bold; }
        & > .log-view--node-6 { color: #b8a230; text-style: bold; }
        & > .log-view--node-7 { color: #7d8fe8; text-style: bold; }
    }
    """

    follow: var[bool] = var(True)
    """Stick to the bottom as lines arrive. Off: the view holds still (lines still arrive)."""
    wrap: var[bool] = var(False)
    only_matching: var[bool] = var(False)
    """With a filter, show only the lines that match it."""

    def __init__(
        self,
        *,
        max_lines: int = DEFAULT_MAX_LINES,
        max_chars: int = DEFAULT_MAX_CHARS,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._ring = LineRing(max_lines, max_chars)
        self._index = RowIndex()
        self._pattern: re.Pattern[str] | None = None
        self._matches: deque[int] = deque()
        self._max_width = 0
        self._wrap_width = 0
        # Small: each Strip holds caches of its own, and many of them lengthen GC pauses.
        self._strips: LRUCache[tuple[int, int], Strip] = LRUCache(256)
        self._line_styles: tuple[Style, Style, Style] | None = None
        self._node_styles: list[Style] = []
        self.filter_text = ""
        self.received_total = 0  # source lines appended (markers left out)
        self.skipped_total = 0  # source lines the markers say were skipped

    # -- state the owner shows ---------------------------------------------------------------

    @property
    def max_lines(self) -> int:
        return self._ring.max_lines

    @property
    def line_count(self) -> int:
        """Lines buffered (marker lines included)."""
        return len(self._ring)

    @property
    def displayed_count(self) -> int:
        return len(self._index)

    @property
    def match_count(self) -> int:
        return len(self._matches)

    def lines(self) -> list[str]:
        """Every buffered line, oldest first."""
        return self._ring.snapshot()

    def visible_lines(self) -> list[str]:
        """The text of the rows on screen (a wrapped line's pieces joined)."""
        seen: list[int] = []
        for y in range(self.scrollable_content_region.height):
            located = self._index.locate(round(self.scroll_y) + y)
            if located is not None and (not seen or seen[-1] != located[0]):
                seen.append(located[0])
        return [self._ring[seq] for seq in seen]

    # -- feeding -----------------------------------------------------------------------------

    def append(self, lines: Sequence[str]) -> None:
        """Add a batch of clean lines (see `clean_line`): one index update, one refresh."""
        if not lines:
            return
        ring, index = self._ring, self._index
        start = ring.next
        ring.extend(lines)
        markers = [line for line in lines if isinstance(line, Marker)]
        self.skipped_total += sum(marker.skipped for marker in markers)
        self.received_total += len(lines) - len(markers)
        skip = max(0, ring.first - start)  # lines of this batch already pushed out again
        new, first_seq = lines[skip:], start + skip
        matched: list[int] = []
        if self._pattern is not None:
            search = self._pattern.search
            matched = [first_seq + i for i, line in enumerate(new) if search(line)]
            self._matches.extend(matched)
        if self._pattern is not None and self.only_matching:
            self._index_lines(matched, [new[seq - first_seq] for seq in matched])
        else:
            self._index_lines(list(range(first_seq, first_seq + len(new))), new)
        pruned = index.prune(ring.first)
        while self._matches and self._matches[0] < ring.first:
            self._matches.popleft()
        if not self.wrap and new:
            self._max_width = max(self._max_width, max(map(_cells, new)))
        self._resize_virtual()
        if self.follow:
            self._stick_to_end()
        elif pruned:
            # Keep the same lines under the viewport while old ones leave the buffer.
            self.scroll_to(y=max(0, self.scroll_y - pruned), animate=False, immediate=True)
        self.refresh()

    def clear(self) -> None:
        self._ring.clear()
        self._index = RowIndex()
        self._matches.clear()
        self._max_width = 0
        self._strips.clear()
        self.received_total = self.skipped_total = 0
        self._resize_virtual()
        self.scroll_to(0, 0, animate=False, immediate=True)
        self.refresh()

    def set_filter(self, query: str) -> None:
        """Highlight matches of `query` (and with `only_matching`, hide the other lines)."""
        if query == self.filter_text:
            return
        self.filter_text = query
        self._pattern = compile_filter(query)
        self._matches.clear()
        if self._pattern is not None:
            search, ring = self._pattern.search, self._ring
            self._matches.extend(seq for seq in range(ring.first, ring.next) if search(ring[seq]))
        self._reindex()

    # -- layout ------------------------------------------------------------------------------

    def _index_lines(self, seqs: list[int], lines: Sequence[str]) -> None:
        """Append lines (`seqs[i]` is the sequence number of `lines[i]`) to the row index."""
        if not self.wrap:
            self._index.extend(seqs)
            return
        width = self._wrap_width
        rows = [
            (len(line) - 1) // width + 1 if line.isascii() else _wrapped_rows(line, width)
            for line in lines
        ]
        self._index.extend(seqs, [max(1, n) for n in rows])

    def _reindex(self) -> None:
        """Rebuild the row index (wrap, filter or width changed), keeping the top line."""
        anchor = None
        if not self.follow and len(self._index):
            located = self._index.locate(round(self.scroll_y))
            anchor = located[0] if located else None
        self._wrap_width = max(1, self.scrollable_content_region.width)
        self._index = RowIndex()
        ring = self._ring
        lines = ring.snapshot()
        if self._pattern is not None and self.only_matching:
            seqs = list(self._matches)
            self._index_lines(seqs, [lines[seq - ring.first] for seq in seqs])
        else:
            self._index_lines(list(range(ring.first, ring.next)), lines)
        if not self.wrap:
            self._max_width = max(map(_cells, lines), default=0)
        self._strips.clear()
        self._resize_virtual()
        if self.follow:
            self._stick_to_end()
        elif anchor is not None:
            self.scroll_to(y=self._index.row_of(anchor), animate=False, immediate=True)
        self.refresh()

    def _resize_virtual(self) -> None:
        width = 0 if self.wrap else self._max_width
        self.virtual_size = Size(width, self._index.rows)

    def watch_wrap(self, wrap: bool) -> None:
        self.set_class(wrap, "-wrap")
        if wrap:
            self.scroll_to(x=0, animate=False, immediate=True)
        self._reindex()

    def watch_only_matching(self) -> None:
        if self._pattern is not None:
            self._reindex()

    def watch_follow(self, follow: bool) -> None:
        if follow:
            self._stick_to_end()

    def _stick_to_end(self) -> None:
        self.scroll_end(animate=False, immediate=True, x_axis=False)
        # A scrollbar that appears with these lines shrinks the viewport after layout.
        self.call_after_refresh(self._restick)

    def _restick(self) -> None:
        if self.follow and self.scroll_y != self.max_scroll_y:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def on_resize(self, event: events.Resize) -> None:
        if self.wrap and self.scrollable_content_region.width != self._wrap_width:
            self._reindex()
        elif self.follow:
            self._stick_to_end()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._line_styles = None
        self._node_styles = []
        self._strips.clear()

    # -- scrolling by the user turns follow off (end turns it back on) -----------------------

    def action_scroll_up(self) -> None:
        self.follow = False
        super().action_scroll_up()

    def action_page_up(self) -> None:
        self.follow = False
        super().action_page_up()

    def action_scroll_home(self) -> None:
        self.follow = False
        super().action_scroll_home()

    def action_scroll_end(self) -> None:
        self.follow = True

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self.follow = False

    # -- rendering ---------------------------------------------------------------------------

    def _rich_styles(self) -> tuple[Style, Style, Style]:
        if self._line_styles is None:
            base = self.rich_style
            match = self.get_component_rich_style("log-view--match", partial=True)
            marker = self.get_component_rich_style("log-view--marker", partial=True)
            self._line_styles = (base, base + match, base + marker)
        return self._line_styles

    def _node_style(self, color: int) -> Style:
        if not self._node_styles:
            base = self._rich_styles()[0]
            self._node_styles = [
                base + self.get_component_rich_style(f"log-view--node-{i}", partial=True)
                for i in range(NODE_COLORS)
            ]
        return self._node_styles[color]

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        base = self._rich_styles()[0]
        located = self._index.locate(scroll_y + y)
        if located is None:
            return Strip.blank(width, base)
        strip = self._strips.get(located)
        if strip is None:
            strip = self._render_piece(*located)
            self._strips[located] = strip
        if self.wrap:
            return strip.crop_extend(0, width, base)
        return strip.crop_extend(scroll_x, scroll_x + width, base)

    def _render_piece(self, seq: int, piece: int) -> Strip:
        base, match, marker = self._rich_styles()
        line = self._ring[seq]
        text, start = _piece(line, self._wrap_width, piece) if self.wrap else (line, 0)
        if isinstance(line, Marker):
            return Strip([Segment(text, marker)], _cells(text))
        # A merged log's node name (text[:named]) shows in the node's color.
        named = line.prefix - start if isinstance(line, Prefixed) else 0
        if self._pattern is None and named <= 0:
            return Strip([Segment(text, base)], _cells(text))
        node = self._node_style(line.color) if named > 0 else base
        segments: list[Segment] = []
        position = 0  # within text
        if self._pattern is not None:
            for found in islice(self._pattern.finditer(line), MAX_SPANS):
                left, right = found.start() - start, found.end() - start
                if right <= 0 or right == left:
                    continue
                if left >= len(text):
                    break
                left = max(left, 0)
                if left > position:
                    if named > position:
                        _unmatched(segments, text, position, left, named, node, base)
                    else:
                        segments.append(Segment(text[position:left], base))
                position = min(right, len(text))
                segments.append(Segment(text[left:position], match))
        if position < len(text):
            if named > position:
                _unmatched(segments, text, position, len(text), named, node, base)
            else:
                segments.append(Segment(text[position:], base))
        return Strip(segments, _cells(text))


def _unmatched(
    segments: list[Segment], text: str, left: int, right: int, named: int, node: Style, base: Style
) -> None:
    """text[left:right] without a match: the part before `named` in the node's style."""
    cut = min(named, right)
    segments.append(Segment(text[left:cut], node))
    if right > cut:
        segments.append(Segment(text[cut:right], base))
