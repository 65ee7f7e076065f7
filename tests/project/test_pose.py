"""Poses as data: the OpenPose skeleton, its picture (joint order and colours), pose images, placing a
pose in its panel, and poses kept in the project file."""

from __future__ import annotations

import io

import pytest
from helpers import flat_png
from PIL import Image

from storystudio.project import pose
from storystudio.project.fileio import ProjectFileError, load_project, save_project
from storystudio.project.model import Project
from storystudio.project.pose import (
    COLOURS,
    KEYPOINTS,
    LIMBS,
    PanelPose,
    PoseError,
    Skeleton,
    guide_of,
    read_pose_image,
    render_skeletons,
)

# OpenPose's body model in COCO order, and its colours as the OpenPose annotator draws them: written
# out here so that a reordering or a changed colour in pose.py fails.
OPENPOSE_ORDER = ["nose", "neck", "right shoulder", "right elbow", "right wrist", "left shoulder", "left elbow",
                  "left wrist", "right hip", "right knee", "right ankle", "left hip", "left knee", "left ankle",
                  "right eye", "left eye", "right ear", "left ear"]
OPENPOSE_COLOURS = [(255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
                    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
                    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85)]
OPENPOSE_LIMBS = [(1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
                  (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17)]


def only(points: dict[int, tuple[float, float]]) -> Skeleton:
    return Skeleton(tuple(points.get(i) for i in range(18)))


def png_of(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def test_joint_order_colours_and_limbs_are_openposes():
    assert list(KEYPOINTS) == OPENPOSE_ORDER
    assert list(COLOURS) == OPENPOSE_COLOURS
    assert list(LIMBS) == OPENPOSE_LIMBS


def test_each_joint_is_a_disc_of_its_colour_on_black():
    for joint in range(18):
        image = render_skeletons((512, 512), [(only({joint: (0.5, 0.5)}), pose.WHOLE_PANEL)])
        assert image.getpixel((256, 256)) == OPENPOSE_COLOURS[joint]
        assert image.getpixel((256 + 3, 256)) == OPENPOSE_COLOURS[joint]  # radius 4 at 512 pixels
        assert image.getpixel((256 + 6, 256)) == (0, 0, 0)
        assert image.getpixel((5, 5)) == (0, 0, 0)


def test_each_limb_is_drawn_in_sixty_percent_of_its_colour_joints_on_top():
    for index, (a, b) in enumerate(OPENPOSE_LIMBS):
        image = render_skeletons((512, 512), [(only({a: (0.2, 0.5), b: (0.8, 0.5)}), pose.WHOLE_PANEL)])
        shade = tuple(int(c * 0.6) for c in OPENPOSE_COLOURS[index])
        assert image.getpixel((256, 256)) == shade, (index, a, b)
        assert image.getpixel((256, 256 + 2)) == shade  # 4 pixels half width
        assert image.getpixel((256, 256 + 7)) == (0, 0, 0)
        assert image.getpixel((round(0.2 * 512) + 2, 256)) == OPENPOSE_COLOURS[a]  # the joints over the limb
        assert image.getpixel((round(0.8 * 512) - 2, 256)) == OPENPOSE_COLOURS[b]
    # the two ear-to-shoulder links of OpenPose's table are never drawn
    image = render_skeletons((512, 512), [(only({2: (0.2, 0.5), 16: (0.8, 0.5)}), pose.WHOLE_PANEL)])
    assert image.getpixel((256, 256)) == (0, 0, 0)


def test_sticks_grow_with_the_picture_and_missing_joints_draw_nothing():
    image = render_skeletons((1024, 1024), [(only({0: (0.5, 0.5)}), pose.WHOLE_PANEL)])
    assert image.getpixel((512 + 7, 512)) == OPENPOSE_COLOURS[0]  # radius 8 at 1024
    assert pose.stroke_width((512, 768)) == 4 and pose.stroke_width((1024, 1024)) == 8
    blank = render_skeletons((64, 64), [(Skeleton((None,) * 18), pose.WHOLE_PANEL)])
    assert blank.getbbox() is None


def test_a_skeleton_lands_in_its_box():
    box = (0.5, 0.0, 1.0, 0.5)
    image = render_skeletons((400, 400), [(only({1: (0.5, 0.5)}), box)])
    assert image.getpixel((300, 100)) == OPENPOSE_COLOURS[1]
    assert pose.joint_pixels(only({1: (0.5, 0.5)}), box, (400, 400))[1] == (300.0, 100.0)
    assert pose.box_point(box, (400, 400), 300, 100) == (0.5, 0.5)
    standing = Skeleton.standing()
    x, y = pose.joint_pixels(standing, box, (400, 400))[4]
    assert pose.nearest_joint(standing, box, (400, 400), x + 2, y - 1, reach=6) == 4
    assert pose.nearest_joint(standing, box, (400, 400), 10, 390, reach=6) is None


def test_editing_a_skeleton():
    standing = Skeleton.standing()
    moved = standing.moved(4, 1.4, -0.2)
    assert moved.points[4] == (1.0, 0.0) and moved.points[:4] == standing.points[:4]
    assert standing.without(0).points[0] is None
    mirror = standing.mirrored()
    assert mirror.points[2] == pytest.approx((1 - standing.points[5][0], standing.points[5][1]))  # right <- left
    assert mirror.points[16] == pytest.approx((1 - standing.points[17][0], standing.points[17][1]))
    assert [p for q in mirror.mirrored().points for p in q] == pytest.approx([p for q in standing.points for p in q])
    assert Skeleton.from_list(standing.to_list()) == standing
    for preset in pose.PRESETS.values():
        Skeleton(preset)  # every preset is a valid skeleton


@pytest.mark.parametrize("points, words", [
    ([[0.5, 0.5]] * 17, "18 joints"),
    ([[0.5, 0.5]] * 17 + [[1.5, 0.5]], "left ear"),
    ([[0.5, 0.5]] * 17 + [[float("nan"), 0.5]], "left ear"),
    ([[0.5, 0.5]] * 17 + ["x"], "not a point"),
    ("nope", "not a list"),
])
def test_bad_skeletons_are_refused_in_words(points, words):
    with pytest.raises(PoseError, match=words):
        Skeleton.from_list(points)


def test_pose_images_are_checked_in_plain_words():
    good = png_of(render_skeletons((256, 256), [(Skeleton.standing(), pose.WHOLE_PANEL)]))
    assert read_pose_image(good).size == (256, 256)
    jpeg = io.BytesIO()
    render_skeletons((256, 256), [(Skeleton.standing(), pose.WHOLE_PANEL)]).save(jpeg, "JPEG")
    assert pose.pose_png(jpeg.getvalue()).startswith(b"\x89PNG")  # JPEG in, PNG kept
    with pytest.raises(PoseError, match="is not a picture StoryStudio can read"):
        read_pose_image(b"not an image at all")
    with pytest.raises(PoseError, match="does not look like an OpenPose skeleton"):
        read_pose_image(flat_png((200, 180, 160), (128, 128)))  # a photo-like picture
    with pytest.raises(PoseError, match="all black"):
        read_pose_image(flat_png((0, 0, 0), (128, 128)))
    with pytest.raises(PoseError, match="only 16x16 pixels"):
        read_pose_image(flat_png((0, 0, 0), (16, 16)))


def test_poses_are_placed_by_box_region_tag_order_or_the_whole_panel():
    a = PanelPose("Ann", Skeleton.standing())
    b = PanelPose("Bo", Skeleton.standing())
    boxed = PanelPose("Ann", Skeleton.standing(), box=(0.1, 0.2, 0.3, 0.9))
    gone = PanelPose("Cy", Skeleton.standing())
    group = PanelPose("", image="img-x.png")
    placed = dict((id(p), box) for p, box in pose.place([a, b, boxed, gone, group], ["Ann", "Bo"]))
    assert placed[id(a)] == (0.0, 0.0, 0.5, 1.0) and placed[id(b)] == (0.5, 0.0, 1.0, 1.0)
    assert placed[id(boxed)] == (0.1, 0.2, 0.3, 0.9)
    assert placed[id(gone)] == placed[id(group)] == pose.WHOLE_PANEL
    regions = {"Bo": (0.6, 0.1, 0.9, 0.9)}
    assert pose.place([b], ["Ann", "Bo"], regions)[0][1] == (0.6, 0.1, 0.9, 0.9)
    with pytest.raises(PoseError, match="either drawn"):
        PanelPose("Ann")
    with pytest.raises(PoseError, match="outside the panel"):
        PanelPose("Ann", Skeleton.standing(), box=(0.0, 0.0, 1.2, 1.0))


def test_a_guide_draws_imported_pictures_in_their_boxes_and_skeletons_over_them():
    picture = render_skeletons((100, 200), [(only({0: (0.5, 0.5)}), pose.WHOLE_PANEL)])
    images = {"img-pose.png": png_of(picture)}
    poses = [PanelPose("Bo", image="img-pose.png"), PanelPose("Ann", only({1: (0.5, 0.5)}))]
    guide = guide_of(poses, ["Ann", "Bo"], images)
    assert guide.kind == "pose" and len(guide.skeletons) == 1 and len(guide.images) == 1
    out = guide.render((400, 400))
    assert out.getpixel((100, 200)) == OPENPOSE_COLOURS[1]  # Ann's neck, left column
    assert out.getpixel((300, 200)) == OPENPOSE_COLOURS[0]  # Bo's imported nose, fitted into the right column
    assert pose.picture_digest(out) == pose.picture_digest(guide.render((400, 400)))
    assert pose.picture_digest(out) != pose.picture_digest(guide.render((400, 392)))
    assert guide_of([], ["Ann"], images) is None
    assert guide_of([PanelPose("Ann", image="img-missing.png")], ["Ann"], images) is None


def test_the_project_keeps_poses_and_their_pictures(tmp_path):
    project = Project.example()
    panel = project.panels[1]
    name = project.add_image(pose.pose_png(png_of(render_skeletons((64, 96), [(Skeleton.standing(),
                                                                              pose.WHOLE_PANEL)]))))
    drawn = PanelPose(panel.characters()[0], Skeleton.standing().moved(4, 0.1, 0.1), box=(0.1, 0.0, 0.6, 1.0))
    panel.poses = [drawn, PanelPose("", image=name)]
    assert name in project.referenced_images() and name not in project.unused_images()
    path = tmp_path / "posed.storystudio"
    save_project(project, path)
    again = load_project(path)
    assert again.panels[1].poses == panel.poses
    assert again.images[name] == project.images[name]
    assert again.panels[1].pose_of("") == panel.poses[1]
    story = again.to_story()
    assert story.panels[1].guides[0].skeletons == ((drawn.skeleton, drawn.box),)
    assert story.panels[0].guides == ()


def test_a_damaged_pose_in_a_file_is_named(tmp_path):
    import json
    import zipfile

    project = Project.example()
    project.panels[0].poses = [PanelPose("", Skeleton.standing())]
    path = tmp_path / "a.storystudio"
    save_project(project, path)
    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    doc = json.loads(members["project.json"])
    doc["panels"][0]["poses"][0]["skeleton"][3] = [2.0, 0.5]
    members["project.json"] = json.dumps(doc).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for n, data in members.items():
            archive.writestr(n, data)
    with pytest.raises(ProjectFileError, match=r"is damaged: joint 4 of pose 1 of panel 1 must be at most 1, not 2\.0\.$"):
        load_project(path)


def flat(skeleton: Skeleton) -> list[float]:
    return [v for point in skeleton.points for v in point]


def test_presets_keep_a_persons_proportions_in_any_box():
    standing = Skeleton.standing()
    assert flat(pose.preset("standing", pose.WHOLE_PANEL, (600, 1000))) == pytest.approx(flat(standing))
    wide = pose.preset("standing", pose.WHOLE_PANEL, (1200, 1000))  # twice as wide: half as wide in the box
    assert wide.points[7][0] - wide.points[4][0] == pytest.approx((standing.points[7][0] - standing.points[4][0]) / 2)
    assert wide.points[10][1] == pytest.approx(standing.points[10][1])  # full height
    narrow = pose.preset("standing", pose.WHOLE_PANEL, (300, 1000))  # half as wide: half as tall
    assert narrow.points[10][1] - narrow.points[0][1] == pytest.approx((standing.points[10][1] - standing.points[0][1]) / 2)
    assert narrow.points[7][0] == pytest.approx(standing.points[7][0])
