"""A layout that lines its widgets up in rows and wraps to the next row when the width runs out.

Toolbars and rows of controls use it so that a narrow window shows every
control on another line instead of hiding some behind a "»" or clipping
them. It reports its height for a given width, so the widget holding it
grows by a row when its controls wrap.
"""

from __future__ import annotations

from PySide6.QtCore import QMargins, QPoint, QRect, QSize, Qt
from PySide6.QtWidgets import QLayout, QLayoutItem, QSizePolicy, QWidget


class FlowLayout(QLayout):
    """Left to right, top to bottom; each row as tall as its tallest widget, centred vertically."""

    def __init__(self, parent: QWidget | None = None, spacing: int = 4, margins: int = 0):
        super().__init__(parent)
        self._items: list[QLayoutItem] = []
        self._spacing = spacing
        self.setContentsMargins(QMargins(margins, margins, margins, margins))

    # ---- QLayout's item list -------------------------------------------------------
    def addItem(self, item: QLayoutItem) -> None:
        self._items.append(item)

    def addWidgets(self, *widgets: QWidget) -> None:
        for widget in widgets:
            self.addWidget(widget)

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int) -> QLayoutItem | None:
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int) -> QLayoutItem | None:
        return self._items.pop(index) if 0 <= index < len(self._items) else None

    def spacing(self) -> int:
        return self._spacing

    # ---- sizes -----------------------------------------------------------------------
    def expandingDirections(self) -> Qt.Orientations:
        return Qt.Orientations(0)

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        return self._arrange(QRect(0, 0, width, 0), move=False)

    def sizeHint(self) -> QSize:
        """Everything on one row."""
        m = self.contentsMargins()
        visible = [i for i in self._items if not _hidden(i)]
        width = sum(i.sizeHint().width() for i in visible) + self._spacing * max(0, len(visible) - 1)
        height = max((i.sizeHint().height() for i in visible), default=0)
        return QSize(width + m.left() + m.right(), height + m.top() + m.bottom())

    def minimumSize(self) -> QSize:
        """As wide as the widest single widget: everything else can wrap."""
        m = self.contentsMargins()
        size = QSize()
        for item in self._items:
            if not _hidden(item):
                size = size.expandedTo(item.sizeHint())
        return QSize(size.width() + m.left() + m.right(), size.height() + m.top() + m.bottom())

    def setGeometry(self, rect: QRect) -> None:
        super().setGeometry(rect)
        self._arrange(rect, move=True)

    def _arrange(self, rect: QRect, move: bool) -> int:
        m = self.contentsMargins()
        area = rect.adjusted(m.left(), m.top(), -m.right(), -m.bottom())
        rows: list[list[tuple[QLayoutItem, QSize]]] = [[]]
        x = 0
        for item in self._items:
            if _hidden(item):
                continue
            hint = item.sizeHint()
            if rows[-1] and x + self._spacing + hint.width() > area.width():
                rows.append([])
                x = 0
            x += (self._spacing if rows[-1] else 0) + hint.width()
            rows[-1].append((item, hint))
        y = area.y()
        for row in rows:
            if not row:
                continue
            height = max(hint.height() for _, hint in row)
            x = area.x()
            for item, hint in row:
                if move:
                    item.setGeometry(QRect(QPoint(x, y + (height - hint.height()) // 2), hint))
                x += hint.width() + self._spacing
            y += height + self._spacing
        return y - self._spacing - area.y() + m.top() + m.bottom() if any(rows) else m.top() + m.bottom()


def _hidden(item: QLayoutItem) -> bool:
    widget = item.widget()
    return widget is not None and widget.isHidden()


class FlowRow(QWidget):
    """A widget holding controls in a FlowLayout; it asks for the height its rows need at its width."""

    def __init__(self, *widgets: QWidget, spacing: int = 4, parent: QWidget | None = None):
        super().__init__(parent)
        self.flow = FlowLayout(self, spacing=spacing)
        self.flow.addWidgets(*widgets)
        policy = QSizePolicy(QSizePolicy.Preferred, QSizePolicy.Preferred)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        return self.flow.heightForWidth(width)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        # the parent's layout asks for our height again now that the width is known
        if self.heightForWidth(self.width()) != self.height():
            self.updateGeometry()


__all__ = ["FlowLayout", "FlowRow"]
