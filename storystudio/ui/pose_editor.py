"""The pose editor: a panel's poses, one per character, drawn as OpenPose skeletons whose joints the user
drags, or imported from an OpenPose picture.

Thin over :mod:`storystudio.project.pose`: the canvas shows exactly the control picture the engine
gives the ControlNet (``Guide.render``), lightened over the panel's picture, and hands clicks to the
pure hit-testing and editing functions there.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ..project import pose as poses
from ..project.pose import KEYPOINTS, PRESETS, PanelPose, PoseError, Skeleton

WHOLE = ""  # the character slot of a pose of the whole panel
REACH = 12  # pixels around a joint that pick it


def pose_summary(panel) -> str:
    """One line about a panel's poses, for the panel view."""
    if not panel.poses:
        return "none (the model chooses)"
    parts = []
    for pose in panel.poses:
        who = f"[{pose.character}]" if pose.character else "whole panel"
        parts.append(f"{who} {'drawn' if pose.skeleton is not None else 'imported'}")
    return ", ".join(parts)


def pil_to_qimage(image) -> QImage:
    rgb = image.convert("RGB")
    return QImage(rgb.tobytes(), rgb.width, rgb.height, 3 * rgb.width, QImage.Format.Format_RGB888).copy()


class PoseCanvas(QWidget):
    """The panel at its shape with every pose on it; the current character's joints can be dragged."""

    edited = Signal()  # a joint moved or was hidden
    hovered = Signal(str)  # the joint under the pointer ("" for none)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setMinimumSize(320, 320)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.setMouseTracking(True)
        self.panel_size = (768, 768)
        self.backdrop: QImage | None = None
        self.poses: list[PanelPose] = []
        self.characters: list[str] = []
        self.images: dict[str, bytes] = {}
        self.current = WHOLE
        self.dragging: int | None = None

    # ---- the model ----------------------------------------------------------------------------------------
    def set_scene(self, panel_size, backdrop: QImage | None, poses_: list[PanelPose], characters: list[str],
                  images: dict[str, bytes]) -> None:
        self.panel_size = (int(panel_size[0]), int(panel_size[1]))
        self.backdrop = backdrop
        self.poses, self.characters, self.images = poses_, characters, images
        self.update()

    def current_pose(self) -> PanelPose | None:
        return next((p for p in self.poses if p.character == self.current), None)

    def picture_rect(self) -> QRectF:
        """Where the panel is drawn: as large as fits, keeping its shape, centred."""
        w, h = self.panel_size
        scale = min((self.width() - 8) / w, (self.height() - 8) / h)
        pw, ph = max(1.0, w * scale), max(1.0, h * scale)
        return QRectF((self.width() - pw) / 2, (self.height() - ph) / 2, pw, ph)

    def _box(self, pose: PanelPose):
        return dict((id(p), b) for p, b in poses.place(self.poses, self.characters))[id(pose)]

    def joint_at(self, pos: QPointF) -> int | None:
        """The current skeleton's joint under the widget point ``pos``, if any."""
        pose = self.current_pose()
        if pose is None or pose.skeleton is None:
            return None
        rect = self.picture_rect()
        size = (round(rect.width()), round(rect.height()))
        return poses.nearest_joint(pose.skeleton, self._box(pose), size, pos.x() - rect.x(), pos.y() - rect.y(),
                                   REACH)

    def joint_point(self, joint: int) -> QPointF | None:
        """Where ``joint`` of the current skeleton is drawn, in widget coordinates."""
        pose = self.current_pose()
        if pose is None or pose.skeleton is None:
            return None
        rect = self.picture_rect()
        size = (round(rect.width()), round(rect.height()))
        point = poses.joint_pixels(pose.skeleton, self._box(pose), size)[joint]
        return None if point is None else QPointF(rect.x() + point[0], rect.y() + point[1])

    # ---- painting -----------------------------------------------------------------------------------------
    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor("#202124"))
        rect = self.picture_rect()
        painter.fillRect(rect, Qt.black)
        if self.backdrop is not None and not self.backdrop.isNull():
            painter.setOpacity(0.35)
            painter.drawImage(rect, self.backdrop)
            painter.setOpacity(1.0)
        size = (max(1, round(rect.width())), max(1, round(rect.height())))
        guide = poses.guide_of(self.poses, self.characters, self.images)
        if guide is not None:
            painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_Lighten)
            painter.drawImage(rect.topLeft(), pil_to_qimage(guide.render(size)))
            painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_SourceOver)
        pose = self.current_pose()
        if pose is not None:
            left, top, right, bottom = self._box(pose)
            pen = QPen(QColor("#e8eaed"), 1, Qt.DashLine)
            painter.setPen(pen)
            painter.drawRect(QRectF(rect.x() + left * rect.width(), rect.y() + top * rect.height(),
                                    (right - left) * rect.width(), (bottom - top) * rect.height()))
            if pose.skeleton is not None and self.dragging is not None:
                point = poses.joint_pixels(pose.skeleton, (left, top, right, bottom), size)[self.dragging]
                if point is not None:
                    painter.setPen(QPen(QColor("white"), 2))
                    painter.drawEllipse(QPointF(rect.x() + point[0], rect.y() + point[1]), REACH / 2, REACH / 2)
        painter.end()

    # ---- dragging -----------------------------------------------------------------------------------------
    def mousePressEvent(self, event) -> None:
        joint = self.joint_at(event.position())
        if joint is None:
            return
        pose = self.current_pose()
        if event.button() == Qt.RightButton:  # hide a joint, as OpenPose leaves out what it does not see
            pose.skeleton = pose.skeleton.without(joint)
            self.edited.emit()
            self.update()
            return
        self.dragging = joint
        self.update()

    def mouseMoveEvent(self, event) -> None:
        if self.dragging is None:
            joint = self.joint_at(event.position())
            self.hovered.emit("" if joint is None else KEYPOINTS[joint])
            return
        self.move_joint(self.dragging, event.position())

    def move_joint(self, joint: int, pos: QPointF) -> None:
        """Put ``joint`` of the current skeleton under the widget point ``pos``."""
        pose = self.current_pose()
        rect = self.picture_rect()
        size = (round(rect.width()), round(rect.height()))
        x, y = poses.box_point(self._box(pose), size, pos.x() - rect.x(), pos.y() - rect.y())
        pose.skeleton = pose.skeleton.moved(joint, x, y)
        self.edited.emit()
        self.update()

    def mouseReleaseEvent(self, event) -> None:
        self.dragging = None
        self.update()


class PoseEditorDialog(QDialog):
    """Edit the poses of one panel; ``values()`` gives the new poses and the pose pictures imported."""

    def __init__(self, panel, number: int, characters: list[str], images: dict[str, bytes], panel_size,
                 backdrop: QImage | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle(f"Poses of panel {number}")
        self.resize(760, 640)
        self.poses = copy.deepcopy(panel.poses)
        self.images = dict(images)  # the project's pictures plus those imported here
        self.imported: dict[str, bytes] = {}
        self.characters = characters
        self.who = QComboBox()
        for name in characters:
            self.who.addItem(f"[{name}]", name)
        self.who.addItem("Whole panel (everyone in one picture)", WHOLE)
        self.who.setToolTip("Whose pose to draw: each character stands in their own part of the panel.")
        self.preset = QComboBox()
        for name in PRESETS:
            self.preset.addItem(name.capitalize(), name)
        self.draw_button = QPushButton("Draw Pose")
        self.draw_button.setToolTip("Give this character the chosen ready-made skeleton; then drag its joints.")
        self.mirror_button = QPushButton("Mirror")
        self.mirror_button.setToolTip("Flip the skeleton left to right (its left and right sides swap).")
        self.import_button = QPushButton("Import Pose Image…")
        self.import_button.setToolTip("Use an OpenPose skeleton picture (coloured sticks on black) for this "
                                      "character.")
        self.remove_button = QPushButton("Remove Pose")
        self.canvas = PoseCanvas()
        self.status = QLabel()
        self.status.setWordWrap(True)
        top = QHBoxLayout()
        top.addWidget(QLabel("Pose of"))
        top.addWidget(self.who, 1)
        row = QHBoxLayout()
        for w in (self.preset, self.draw_button, self.mirror_button, self.import_button, self.remove_button):
            row.addWidget(w)
        row.addStretch(1)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(row)
        layout.addWidget(self.canvas, 1)
        layout.addWidget(self.status)
        layout.addWidget(buttons)
        self.canvas.set_scene(panel_size, backdrop, self.poses, characters, self.images)
        self.who.currentIndexChanged.connect(self._choose)
        self.draw_button.clicked.connect(self.draw_preset)
        self.mirror_button.clicked.connect(self.mirror)
        self.import_button.clicked.connect(self._import_clicked)
        self.remove_button.clicked.connect(self.remove)
        self.canvas.edited.connect(self._refresh)
        self.canvas.hovered.connect(lambda name: self._refresh(name))
        self._choose()

    @property
    def character(self) -> str:
        return self.who.currentData()

    def _pose(self) -> PanelPose | None:
        return next((p for p in self.poses if p.character == self.character), None)

    def _choose(self, *_: object) -> None:
        self.canvas.current = self.character
        self.canvas.update()
        self._refresh()

    def _refresh(self, joint: str = "") -> None:
        pose = self._pose()
        who = f"[{self.character}]" if self.character else "The whole panel"
        if pose is None:
            text = f"{who} has no pose: Draw Pose gives a skeleton to drag, or import an OpenPose picture."
        elif pose.skeleton is not None:
            text = (f"{who}: drag a joint to move it, right-click a joint to leave it out."
                    + (f"  ({joint})" if joint else ""))
        else:
            text = f"{who}: an imported pose picture."
        self.status.setText(text)
        self.mirror_button.setEnabled(pose is not None and pose.skeleton is not None)
        self.remove_button.setEnabled(pose is not None)

    def _set(self, new: PanelPose | None) -> None:
        self.poses[:] = [p for p in self.poses if p.character != self.character] + ([new] if new else [])
        self.canvas.update()
        self._refresh()

    def draw_preset(self) -> None:
        """Give the current character the chosen ready-made skeleton, proportioned for its box."""
        placed = poses.place([PanelPose(self.character, Skeleton.standing())], self.characters)
        self._set(PanelPose(self.character, poses.preset(self.preset.currentData(), placed[0][1],
                                                         self.canvas.panel_size)))

    def mirror(self) -> None:
        pose = self._pose()
        if pose is not None and pose.skeleton is not None:
            self._set(PanelPose(pose.character, pose.skeleton.mirrored(), box=pose.box))

    def remove(self) -> None:
        self._set(None)

    def _import_clicked(self) -> None:
        file, _ = QFileDialog.getOpenFileName(self, "Import a pose image", "",
                                              "Pose pictures (*.png *.jpg *.jpeg);;All files (*)")
        if file:
            self.import_image(file)

    def import_image(self, file: str | Path) -> bool:
        """Use an OpenPose picture for the current character; a plain message when it cannot be one."""
        path = Path(file)
        try:
            png = poses.pose_png(path.read_bytes(), f'"{path.name}"')
        except OSError as exc:
            QMessageBox.warning(self, "Pose image", f'"{path.name}" cannot be read ({exc.strerror or exc}).')
            return False
        except PoseError as exc:
            QMessageBox.warning(self, "Pose image", str(exc))
            return False
        name = f"pose-{hashlib.sha256(png).hexdigest()[:24]}.png"
        self.images[name] = self.imported[name] = png
        self._set(PanelPose(self.character, image=name))
        return True

    def values(self) -> tuple[list[PanelPose], dict[str, bytes]]:
        """The panel's poses and the pictures imported for them (by file name)."""
        used = {p.image for p in self.poses if p.image}
        return copy.deepcopy(self.poses), {k: v for k, v in self.imported.items() if k in used}
