"""The character sheet: the cast, and for each character its look, photo and reference pictures.

Every change goes through an undo command pushed on ``session.undo``; the
sheet redraws itself from the session's signals. Generating references is the
main window's job: the sheet only asks for it (``generate_references_requested``).
Nothing here imports torch.
"""

from __future__ import annotations

import io
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from ..project.story import NO_CHARACTER
from .commands import AddCharacter, DeleteCharacter, SetCharacterField, rename_character
from .files import ask_open_file
from .preferences import Preferences
from .session import ProjectSession

LOCK = "\N{LOCK}"
ID_ROLE = Qt.ItemDataRole.UserRole
IMAGE_ROLE = Qt.ItemDataRole.UserRole + 1
THUMB = 96
#: Reference photos larger than this (on their longer side) are scaled down before they are stored.
MAX_PHOTO_SIDE = 2048
IMAGE_FILTER = "Pictures (*.png *.jpg *.jpeg *.webp *.bmp *.gif *.tif *.tiff);;All files (*)"


def name_problem(name: str, others: list[str]) -> str | None:
    """Why ``name`` cannot be a character's name (``others``: the rest of the cast), or None if it can."""
    if not name:
        return "A character needs a name."
    if any(ch in name for ch in "[]\n\r"):
        return "A name cannot contain square brackets: panels use [Name] to show who is in them."
    if name == NO_CHARACTER:
        return f'"{NO_CHARACTER}" is kept for panels with nobody in them. Choose another name.'
    twin = next((o for o in others if o.casefold() == name.casefold()), None)
    if twin is not None:
        return f'There is already a character called "{twin}". Choose another name.'
    return None


def photo_png(path: str | Path) -> bytes:
    """A picture file as PNG bytes, upright and at most MAX_PHOTO_SIDE pixels on its longer side.

    Raises ValueError with a plain message when the file is not a picture that can be read.
    """
    from PIL import Image, ImageOps  # PIL only when a photo is actually added

    try:
        with Image.open(path) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
            has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
            image = image.convert("RGBA" if has_alpha else "RGB")
            image.thumbnail((MAX_PHOTO_SIDE, MAX_PHOTO_SIDE))
            out = io.BytesIO()
            image.save(out, format="PNG")
            return out.getvalue()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError(f'"{Path(path).name}" could not be read as a picture.') from exc


class _FocusOut(QObject):
    """Calls ``callback`` when the watched widget loses keyboard focus."""

    def __init__(self, callback, parent: QObject):
        super().__init__(parent)
        self.callback = callback

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.FocusOut:
            self.callback()
        return False


class CharacterSheet(QWidget):
    """The cast list with an editor for the selected character."""

    #: The user asked for new reference pictures of this character (its id).
    generate_references_requested = Signal(str)
    #: The user double-clicked a panel that shows the character (the panel's id).
    panel_activated = Signal(str)

    def __init__(self, session: ProjectSession, preferences: Preferences | None = None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.preferences = preferences
        self._updating = False
        self._shown_id: str | None = None  # the character whose details the editor shows
        self._loaded_name = ""  # the name / description as last loaded from the project, to
        self._loaded_description = ""  # tell the user's unsaved typing from a change made by undo
        self._last_row = -1
        self._thumbs: dict[str, QPixmap] = {}

        # ---- the cast ---------------------------------------------------------------
        self.list = QListWidget()
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.setToolTip("Everyone in your story. Select a character to edit how they look.")
        self.add_button = QPushButton("Add")
        self.add_button.setToolTip("Add a new character to the cast.")
        self.delete_button = QPushButton("Delete")
        self.delete_button.setToolTip("Remove the selected character from the cast (Undo brings it back).")
        cast_buttons = QHBoxLayout()
        cast_buttons.addWidget(self.add_button)
        cast_buttons.addWidget(self.delete_button)
        cast_buttons.addStretch(1)
        cast_box = QWidget()
        cast_layout = QVBoxLayout(cast_box)
        cast_layout.setContentsMargins(0, 0, 0, 0)
        cast_layout.addWidget(QLabel("<b>Characters</b>"))
        cast_layout.addWidget(self.list, 1)
        cast_layout.addLayout(cast_buttons)
        self.list.setFixedHeight(4 * self.list.fontMetrics().height() + 16)  # a few names; more scroll

        # ---- the editor -------------------------------------------------------------------
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("Name used in panels, e.g. Mira")
        self.name_edit.setToolTip("The name you write in square brackets in a panel, like [Mira].")
        self.problem_label = QLabel()
        self.problem_label.setWordWrap(True)
        self.problem_label.setStyleSheet("color: #b00020;")
        self.problem_label.hide()
        self.description_edit = QPlainTextEdit()
        self.description_edit.setPlaceholderText(
            "What they look like: age, hair, face, clothes... everything that should stay the same in every panel."
        )
        self.description_edit.setToolTip("This description is added to every panel that shows the character.")
        self.description_edit.setTabChangesFocus(True)
        self.description_edit.setFixedHeight(5 * self.description_edit.fontMetrics().lineSpacing() + 12)
        self._description_focus = _FocusOut(self.commit_description, self)
        self.description_edit.installEventFilter(self._description_focus)
        self.locked_check = QCheckBox("Locked")
        self.locked_check.setToolTip(
            "Lock a character when you are happy with their look: their name, description, photo and "
            "reference pictures stay as they are until you unlock them."
        )

        self.photo_label = QLabel()
        self.photo_label.setFixedSize(THUMB, THUMB)
        self.photo_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.photo_label.setStyleSheet("border: 1px solid #bbb; color: #777;")
        self.photo_button = QPushButton("Reference photo…")
        self.photo_button.setToolTip("Choose a photo or drawing of this character to guide their look.")
        self.clear_photo_button = QPushButton("Clear photo")
        self.clear_photo_button.setToolTip("Stop using the reference photo.")
        self.photo_strength = QDoubleSpinBox()
        self.photo_strength.setRange(0.0, 2.0)
        self.photo_strength.setSingleStep(0.05)
        self.photo_strength.setDecimals(2)
        self.photo_strength.setPrefix("Strength ")
        self.photo_strength.setToolTip("How strongly the photo steers this character's look in every picture of "
                                       "them (0: not at all; about 0.6 keeps the face and lets the words change "
                                       "the rest).")
        photo_buttons = QVBoxLayout()
        photo_buttons.addWidget(self.photo_button)
        photo_buttons.addWidget(self.clear_photo_button)
        photo_buttons.addWidget(self.photo_strength)
        photo_buttons.addStretch(1)
        photo_row = QHBoxLayout()
        photo_row.addWidget(self.photo_label)
        photo_row.addLayout(photo_buttons, 1)

        self.generate_button = QPushButton("Generate references")
        self.generate_button.setToolTip(
            "Draw a few pictures of this character. The ones you tick are used to keep them looking "
            "the same in every panel."
        )
        self.references = QListWidget()
        self.references.setViewMode(QListView.ViewMode.IconMode)
        self.references.setIconSize(QSize(THUMB, THUMB))
        self.references.setMovement(QListView.Movement.Static)
        self.references.setResizeMode(QListView.ResizeMode.Adjust)
        self.references.setFlow(QListView.Flow.LeftToRight)
        self.references.setWrapping(True)
        self.references.setSpacing(4)
        self.references.setToolTip("Tick the reference pictures that look right; only ticked ones are used.")
        self.references_hint = QLabel("No reference pictures yet: press Generate references.")
        self.references_hint.setStyleSheet("color: #777;")
        self.references_hint.setWordWrap(True)
        self.references_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        # the hint and the pictures take turns in one place of one size: nothing moves when pictures arrive
        self.references_area = QStackedWidget()
        self.references_area.addWidget(self.references_hint)
        self.references_area.addWidget(self.references)
        self.references_area.setFixedHeight(THUMB + 40)

        self.panels_label = QLabel()
        self.panels_label.setWordWrap(True)
        self.panels_label.setFixedHeight(2 * self.panels_label.fontMetrics().lineSpacing() + 4)
        self.panel_list = QListWidget()
        self.panel_list.setFlow(QListView.Flow.LeftToRight)
        self.panel_list.setWrapping(True)
        self.panel_list.setFixedHeight(56)
        self.panel_list.setToolTip("Double-click a panel to go to it.")

        form = QFormLayout()
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        form.addRow("Name", self.name_edit)
        form.addRow("", self.problem_label)
        form.addRow("Looks", self.description_edit)
        form.addRow("", self.locked_check)
        form.addRow("Photo", photo_row)
        self.editor = QWidget()
        editor_layout = QVBoxLayout(self.editor)
        editor_layout.setContentsMargins(0, 0, 0, 0)
        editor_layout.addLayout(form)
        references_header = QHBoxLayout()
        references_header.addWidget(QLabel("<b>Reference pictures</b>"), 1)
        references_header.addWidget(self.generate_button)
        editor_layout.addLayout(references_header)
        editor_layout.addWidget(self.references_area)
        editor_layout.addWidget(QLabel("<b>Panels showing this character</b>"))
        editor_layout.addWidget(self.panels_label)
        editor_layout.addWidget(self.panel_list)
        editor_layout.addStretch(1)

        # one column: in a dock beside the pages there is room for height, not for width
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(cast_box)
        layout.addWidget(self.editor, 1)

        # ---- wiring -----------------------------------------------------------------------
        self.list.currentRowChanged.connect(self._on_row_changed)
        self.add_button.clicked.connect(lambda: self.add_character())
        self.delete_button.clicked.connect(self.delete_current)
        self.name_edit.editingFinished.connect(self.commit_name)
        self.name_edit.textEdited.connect(lambda _text: self._show_problem(None))
        self.locked_check.toggled.connect(self._on_locked_toggled)
        self.photo_button.clicked.connect(self.choose_photo)
        self.clear_photo_button.clicked.connect(self.clear_photo)
        self.photo_strength.editingFinished.connect(self._commit_photo_strength)
        self.generate_button.clicked.connect(self._on_generate)
        self.references.itemChanged.connect(self._on_reference_changed)
        self.panel_list.itemActivated.connect(self._on_panel_activated)

        session.characters_changed.connect(self.refresh)
        session.project_replaced.connect(self._on_project_replaced)
        session.panels_changed.connect(self._refresh_panels)
        session.panel_changed.connect(lambda _id: self._refresh_panels())
        self.refresh()

    # ---- public API ----------------------------------------------------------------------
    def current_id(self) -> str | None:
        """The id of the selected character, or None when nobody is selected."""
        item = self.list.currentItem()
        return None if item is None else item.data(ID_ROLE)

    def select(self, character_id: str) -> None:
        """Select the character with this id (nothing happens for an unknown id)."""
        for row in range(self.list.count()):
            if self.list.item(row).data(ID_ROLE) == character_id:
                self.list.setCurrentRow(row)
                return

    def add_character(self, name: str | None = None, description: str = "") -> str:
        """Add a character with a fresh unique name (based on ``name``) and select it; returns its id."""
        base = (name or "").strip() or "New character"
        taken = {c.name.casefold() for c in self.session.project.characters}
        unique, number = base, 2
        while unique.casefold() in taken:
            unique, number = f"{base} {number}", number + 1
        command = AddCharacter(self.session, unique, description)
        self.session.undo.push(command)
        self.select(command.character.id)
        self.name_edit.setFocus()
        self.name_edit.selectAll()
        return command.character.id

    def delete_current(self) -> None:
        """Delete the selected character (undoable)."""
        character_id = self.current_id()
        if character_id is not None:
            self.session.undo.push(DeleteCharacter(self.session, character_id))

    def commit_name(self) -> bool:
        """Rename the shown character to the text in the name box; False (and a message) if refused."""
        character = self._shown()
        if character is None or self._updating or character.locked:
            return False
        name = self.name_edit.text().strip()
        if name == character.name:
            self.name_edit.setText(name)
            self._show_problem(None)
            return True
        others = [c.name for c in self.session.project.characters if c.id != character.id]
        problem = name_problem(name, others)
        if problem:
            self._show_problem(problem)
            return False
        self._show_problem(None)
        rename_character(self.session, character.id, name)
        return True

    def commit_description(self) -> bool:
        """Store the text of the description box if it changed; True when a command was pushed."""
        character = self._shown()
        if character is None or self._updating or character.locked:
            return False
        text = self.description_edit.toPlainText().strip()
        if text == character.description:
            return False
        self.session.undo.push(SetCharacterField(self.session, character.id, "description", text))
        return True

    def set_locked(self, locked: bool) -> None:
        """Lock or unlock the selected character (what the Locked box does)."""
        character = self._shown()
        if character is None or character.locked == bool(locked):
            return
        if locked:  # keep what was typed before the editor closes
            self.commit_name()
            self.commit_description()
        self.session.undo.push(SetCharacterField(self.session, character.id, "locked", bool(locked)))

    def choose_photo(self) -> None:
        """Ask for a picture file and make it the selected character's reference photo."""
        if self._shown() is None:
            return
        path = ask_open_file(self, self.preferences, "Choose a reference photo", IMAGE_FILTER)
        if path:
            self.set_photo_from_file(path)

    def set_photo_from_file(self, path: str | Path) -> bool:
        """Make the picture at ``path`` the shown character's photo; False (and a message) if unreadable."""
        character = self._shown()
        if character is None:
            return False
        if character.locked:
            self._show_problem("Unlock the character to change the photo.")
            return False
        try:
            png = photo_png(path)
        except ValueError as exc:
            self._show_problem(f"{exc} Choose a PNG, JPEG or WebP picture.")
            return False
        self._show_problem(None)
        image = self.session.project.add_image(png)
        self.session.undo.push(SetCharacterField(self.session, character.id, "photo", image))
        return True

    def _commit_photo_strength(self) -> None:
        character = self._shown()
        value = round(self.photo_strength.value(), 2)
        if character is not None and not character.locked and character.photo_strength != value:
            self.session.undo.push(SetCharacterField(self.session, character.id, "photo_strength", value))

    def clear_photo(self) -> None:
        """Stop using the shown character's photo (undoable)."""
        character = self._shown()
        if character is not None and character.photo and not character.locked:
            self.session.undo.push(SetCharacterField(self.session, character.id, "photo", None))

    # ---- refreshing from the project ------------------------------------------------------
    def refresh(self) -> None:
        """Redraw the cast and the editor from the project; pushes nothing."""
        if self._updating:
            return
        self._updating = True
        try:
            self._refresh_list()
        finally:
            self._updating = False
        self._show(self.current_id())

    def _on_project_replaced(self) -> None:
        self._thumbs.clear()
        self._shown_id = None
        self._updating = True
        try:
            self.list.clear()
        finally:
            self._updating = False
        self.refresh()

    def _refresh_list(self) -> None:
        characters = self.session.project.characters
        ids = [c.id for c in characters]
        current = self.current_id()
        if ids != [self.list.item(r).data(ID_ROLE) for r in range(self.list.count())]:
            self.list.clear()
            for c in characters:
                item = QListWidgetItem()
                item.setData(ID_ROLE, c.id)
                self.list.addItem(item)
        for row, c in enumerate(characters):
            item = self.list.item(row)
            item.setText(f"{c.name}  {LOCK}" if c.locked else c.name)
            item.setToolTip(
                (f"{c.name} is locked: their look is kept as it is." if c.locked else c.name)
                + (f"\n{c.description}" if c.description else "")
            )
        if current in ids:
            row = ids.index(current)
        elif ids:
            row = min(max(self._last_row, 0), len(ids) - 1)
        else:
            row = -1
        if self.list.currentRow() != row:
            self.list.setCurrentRow(row)
        self._last_row = row

    def _on_row_changed(self, row: int) -> None:
        if self._updating:
            return
        if self._shown_id is not None and self._shown_id != self.current_id():
            self.commit_description()  # typing in the box is kept before another character shows
        self._last_row = row
        self._show(self.current_id())

    def _shown(self):
        if self._shown_id is None:
            return None
        return self.session.project.character_by_id(self._shown_id)

    def _show(self, character_id: str | None) -> None:
        """Fill the editor with one character; keeps unsaved typing when the project value is unchanged."""
        character = None if character_id is None else self.session.project.character_by_id(character_id)
        switched = character_id != self._shown_id
        self._shown_id = character.id if character else None
        self._updating = True
        try:
            self.delete_button.setEnabled(character is not None)
            self.editor.setEnabled(character is not None)
            if character is None:
                self.name_edit.clear()
                self.description_edit.clear()
                self.locked_check.setChecked(False)
                self._loaded_name = self._loaded_description = ""
                self._show_problem(None)
            else:
                if switched or character.name != self._loaded_name:
                    self.name_edit.setText(character.name)
                    self._show_problem(None)
                if switched or character.description != self._loaded_description:
                    self.description_edit.setPlainText(character.description)
                self._loaded_name, self._loaded_description = character.name, character.description
                self.locked_check.setChecked(character.locked)
            locked = bool(character and character.locked)
            self.name_edit.setReadOnly(locked)
            self.name_edit.setEnabled(not locked)
            self.description_edit.setEnabled(not locked)
            self.description_edit.setReadOnly(locked)
            self.photo_button.setEnabled(character is not None and not locked)
            self.clear_photo_button.setEnabled(bool(character and character.photo) and not locked)
            self.photo_strength.setEnabled(bool(character and character.photo) and not locked)
            if character is not None and not self.photo_strength.hasFocus():
                self.photo_strength.setValue(character.photo_strength)
            self.generate_button.setEnabled(character is not None and not locked)
            self._refresh_photo(character)
            self._refresh_references(character)
        finally:
            self._updating = False
        self._refresh_panels()

    def _refresh_photo(self, character) -> None:
        pixmap = self._thumbnail(character.photo) if character and character.photo else None
        if pixmap is not None:
            self.photo_label.setPixmap(pixmap)
            self.photo_label.setToolTip("The reference photo of this character.")
        else:
            self.photo_label.setPixmap(QPixmap())
            self.photo_label.setText("No photo" if not (character and character.photo) else "Missing")
            self.photo_label.setToolTip("")

    def _refresh_references(self, character) -> None:
        references = character.references if character else []
        chosen = set(character.chosen_references) if character else set()
        locked = bool(character and character.locked)
        images = [version.image for version in references]
        shown = [self.references.item(r).data(IMAGE_ROLE) for r in range(self.references.count())]
        if images != shown:  # rebuild only when the pictures change, never under a click being handled
            self.references.clear()
            for index, image in enumerate(images):
                item = QListWidgetItem()
                item.setData(ID_ROLE, index)
                item.setData(IMAGE_ROLE, image)
                pixmap = self._thumbnail(image)
                if pixmap is not None:
                    item.setIcon(QIcon(pixmap))
                    item.setText(f"{index + 1}")
                else:
                    item.setText(f"{index + 1} (missing)")
                self.references.addItem(item)
        for index in range(len(images)):
            item = self.references.item(index)
            flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
            if not locked:
                flags |= Qt.ItemFlag.ItemIsUserCheckable
            item.setFlags(flags)
            item.setCheckState(Qt.CheckState.Checked if index in chosen else Qt.CheckState.Unchecked)
            item.setToolTip(
                f"Reference {index + 1}: "
                + ("used to keep the character consistent." if index in chosen else "not used.")
                + (" Unlock the character to change this." if locked else " Untick it if it looks wrong.")
            )
        self.references_area.setCurrentWidget(self.references if references else self.references_hint)
        self.references_hint.setText("No reference pictures yet: press Generate references." if character
                                     else "Select a character.")

    def _refresh_panels(self) -> None:
        character = self._shown()
        if character is None:
            self.panel_list.clear()
            self.panels_label.setText("")
            return
        order = {p.id: n for n, p in enumerate(self.session.project.panels, 1)}
        panels = self.session.panels_showing(character.id)
        numbers = [order[p.id] for p in panels]
        if [p.id for p in panels] != [self.panel_list.item(r).data(ID_ROLE) for r in range(self.panel_list.count())]:
            self.panel_list.clear()  # only when the panels change: not under a double-click being handled
            for panel in panels:
                item = QListWidgetItem()
                item.setData(ID_ROLE, panel.id)
                self.panel_list.addItem(item)
        for row, (number, panel) in enumerate(zip(numbers, panels)):
            item = self.panel_list.item(row)
            item.setText(f"Panel {number}")
            item.setToolTip(panel.prompt)
        if numbers:
            self.panels_label.setText("Panels " + ", ".join(map(str, numbers)) if len(numbers) > 1
                                      else f"Panel {numbers[0]}")
        else:
            self.panels_label.setText(f"No panel shows [{character.name}] yet.")

    def _thumbnail(self, image: str) -> QPixmap | None:
        if image in self._thumbs:
            return self._thumbs[image]
        data = self.session.project.images.get(image)
        if data is None:
            return None
        pixmap = QPixmap()
        if not pixmap.loadFromData(data):
            return None
        pixmap = pixmap.scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                               Qt.TransformationMode.SmoothTransformation)
        self._thumbs[image] = pixmap
        return pixmap

    # ---- user actions ------------------------------------------------------------------------
    def _show_problem(self, text: str | None) -> None:
        self.problem_label.setText(text or "")
        self.problem_label.setVisible(bool(text))

    def _on_locked_toggled(self, checked: bool) -> None:
        if not self._updating:
            self.set_locked(checked)

    def _on_generate(self) -> None:
        character = self._shown()
        if character is None or character.locked:
            return
        self.commit_description()  # generate from what is written, saved or not
        self.generate_references_requested.emit(character.id)

    def _on_reference_changed(self, item: QListWidgetItem) -> None:
        if self._updating:
            return
        character = self._shown()
        if character is None or character.locked:
            return
        checked = {
            self.references.item(r).data(ID_ROLE)
            for r in range(self.references.count())
            if self.references.item(r).checkState() == Qt.CheckState.Checked
        }
        kept = [i for i in character.chosen_references if i in checked]  # keep the order picked
        chosen = kept + sorted(checked - set(kept))
        if chosen != character.chosen_references:
            self.session.undo.push(SetCharacterField(self.session, character.id, "chosen_references", chosen))

    def _on_panel_activated(self, item: QListWidgetItem) -> None:
        self.panel_activated.emit(item.data(ID_ROLE))
