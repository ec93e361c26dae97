"""A DataTable updated in place by row key, so the cursor and scroll stay where they were.

`reconcile(rows)` removes the rows that went away, updates only the cells that changed and
adds the new rows; it never clears the table. Columns have fixed widths, so an update never
re-measures the whole table. The first column holds each row's key as text (for ordering).

DataTable invalidates every rendered cell on any update (its cell cache is keyed by an update
counter), so a poll that changes 10% of 500 rows would re-render every visible cell. This
table keeps its own cache of rendered cells, valid while the cell holds the very same value
object at the same place with the same style: only the cells that changed are rendered again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, RowDoesNotExist

Cell = str | Text
Row = tuple[str, tuple[Cell, ...]]
RENDERED_CELLS_MAX = 20_000


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int


class KeyedTable(DataTable[Cell]):
    COLUMNS: ClassVar[tuple[Column, ...]] = ()

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cursor_type", "row")
        kwargs.setdefault("zebra_stripes", True)
        super().__init__(**kwargs)
        self._cells: dict[str, tuple[Cell, ...]] = {}
        self._order: list[str] = []
        self._pending: list[Row] | None = None
        # select_key before its row arrived: that key, and the row selected when it was asked
        # (a cursor the user moved since is left where they put it).
        self._to_select: tuple[str, str | None] | None = None
        self._rendered: dict[tuple[object, ...], tuple[object, list[list[Segment]]]] = {}

    def on_mount(self) -> None:
        for column in self.COLUMNS:
            self.add_column(column.label, key=column.key, width=column.width)
        if self._pending is not None:
            rows, self._pending = self._pending, None
            self.reconcile(rows)

    @property
    def keys(self) -> list[str]:
        return list(self._order)

    @property
    def selected_key(self) -> str | None:
        if not self._cells or self.cursor_row < 0:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except (CellDoesNotExist, RowDoesNotExist):
            return None
        return key

    def select_key(self, key: str) -> None:
        """Put the cursor on `key`'s row, or on it when it arrives (a cluster being created)
        unless the user moved the cursor meanwhile."""
        self._to_select = None
        if key in self._cells:
            self.move_cursor(row=self.get_row_index(key))
        else:
            self._to_select = (key, self.selected_key)

    def cells_of(self, key: str) -> tuple[Cell, ...] | None:
        return self._cells.get(key)

    def _render_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ) -> list[list[Segment]]:
        if row_index < 0 or column_index < 0:  # header and row labels: as DataTable does
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        row_key = self._row_locations.get_key(row_index)
        column_key = self._column_locations.get_key(column_index)
        value = self._data[row_key][column_key]
        key = (
            row_key,
            column_key,
            row_index,  # the rendered segments carry it (mouse clicks)
            base_style,
            width,
            cursor,
            hover,
            self._show_hover_cursor,
            self._pseudo_class_state,
        )
        cached = self._rendered.get(key)
        if cached is not None and cached[0] is value:
            return cached[1]
        lines = super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        if len(self._rendered) >= RENDERED_CELLS_MAX:
            self._rendered.clear()
        self._rendered[key] = (value, lines)
        return lines

    def reconcile(self, rows: Sequence[Row]) -> None:
        if not self.is_mounted:
            self._pending = list(rows)
            return
        selected = self.selected_key
        cursor_row = self.cursor_row
        wanted = dict(rows)
        gone = [k for k in self._cells if k not in wanted]
        for key in gone:
            self.remove_row(key)
            del self._cells[key]
        columns = [column.key for column in self.COLUMNS]
        added = False
        for key, cells in rows:
            old = self._cells.get(key)
            if old is None:
                self.add_row(*cells, key=key)
                added = True
            elif old != cells:
                for column, before, after in zip(columns, old, cells, strict=True):
                    if before != after:
                        self.update_cell(key, column, after)
            self._cells[key] = cells
        order = [key for key, _ in rows]
        moved = added or gone or order != self._order
        if moved and [row.key.value for row in self.ordered_rows] != order:
            position = {key: index for index, key in enumerate(order)}
            self.sort(columns[0], key=lambda value: position.get(str(value), len(position)))
        self._order = order
        if self._to_select is not None and self._to_select[0] in self._cells:
            key, asked_on = self._to_select
            self._to_select = None
            if selected == asked_on:
                selected, cursor_row = key, -1
        if selected in self._cells and self.get_row_index(selected) != cursor_row:
            self.move_cursor(row=self.get_row_index(selected))
