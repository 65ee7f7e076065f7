"""Regions and photos in the project: kept, defaulted, handed to the engine, and through the file."""

from __future__ import annotations

import pytest

from helpers import flat_png
from storystudio.project.model import Project, ProjectCharacter, ProjectPanel
from storystudio.project.regions import Region, box_problem, clamp_box


def project_with_regions() -> Project:
    project = Project(title="two")
    project.characters = [ProjectCharacter("Ann", "a girl with red hair"), ProjectCharacter("Bo", "a tall man")]
    project.characters[0].photo = project.add_image(flat_png((10, 200, 30), (20, 24)))
    project.characters[0].photo_strength = 0.9
    project.panels = [ProjectPanel("[Ann] reads"), ProjectPanel("[Bo] and [Ann] laugh"), ProjectPanel("[Ann] and [Bo] walk")]
    project.panels[1].regions = [Region("Ann", (0.5, 0.1, 0.9, 1.0)), Region("Bo", (0.0, 0.0, 0.5, 1.0))]
    return project


def test_regions_and_photo_strength_round_trip_and_reach_the_engine():
    project = project_with_regions()
    again = Project.from_dict(project.to_dict(), dict(project.images))
    assert again.panels[1].regions == project.panels[1].regions
    assert again.panels[0].regions is None and again.panels[2].regions is None
    assert again.characters[0].photo_strength == 0.9
    story = again.to_story()
    assert story.characters[0].photo == project.images[project.characters[0].photo]
    assert story.characters[0].photo_strength == 0.9 and story.characters[1].photo is None
    assert story.panels[1].regions == project.panels[1].regions


def test_files_from_before_regions_and_strengths_read_with_defaults():
    data = project_with_regions().to_dict()
    for c in data["characters"]:
        del c["photo_strength"]
    for p in data["panels"]:
        del p["regions"]
    again = Project.from_dict(data)
    assert again.characters[0].photo_strength == 0.6 and all(p.regions is None for p in again.panels)


def test_drawn_regions_default_to_tag_order_and_keep_the_panels_own():
    project = project_with_regions()
    cast = [c.name for c in project.characters]
    assert [r.character for r in project.panels[2].drawn_regions(cast)] == ["Ann", "Bo"]
    assert project.panels[2].drawn_regions(cast)[0].box == (0.0, 0.0, 0.5, 1.0)  # first tag on the left
    assert project.panels[1].drawn_regions(cast) == project.panels[1].regions
    assert project.panels[0].drawn_regions(cast) == []  # one character: the whole picture is hers


@pytest.mark.parametrize("box, ok", [((0, 0, 1, 1), True), ((0.5, 0, 0.4, 1), False), ((0, 0, 1.2, 1), False),
                                     ((0, 0, float("nan"), 1), False), ((0, 0, 1), False)])
def test_box_problems(box, ok):
    assert (box_problem(box) is None) == ok


def test_clamped_boxes_stay_inside_and_keep_a_minimum_size():
    assert clamp_box((1.2, 0.5, -0.1, 0.5)) == (0.0, 0.5, 1.0, 0.52)
    with pytest.raises(ValueError):
        clamp_box((0, 0, 1))


def test_regions_and_photos_survive_the_project_file(tmp_path):
    from storystudio.project.fileio import load_project, save_project

    project = project_with_regions()
    save_project(project, tmp_path / "two.storystudio")
    again = load_project(tmp_path / "two.storystudio")
    assert again.panels[1].regions == project.panels[1].regions and again.panels[2].regions is None
    assert again.characters[0].photo_strength == 0.9
    assert again.images[again.characters[0].photo] == project.images[project.characters[0].photo]


@pytest.mark.parametrize("change, words", [
    (lambda d: d["panels"][1]["regions"][0].update(box=[0.6, 0.1, 0.2, 1.0]), "whose left side is not before its right"),
    (lambda d: d["panels"][1]["regions"][0].update(box=[0.1, 0.1, 1.5, 1.0]), "box"),
    (lambda d: d["characters"][0].update(photo_strength=9.0), "photo strength"),
])
def test_a_damaged_box_or_strength_is_refused_in_plain_words(change, words):
    from pydantic import ValidationError

    from storystudio.project import schema
    from storystudio.project.fileio import FORMAT_NAME, SCHEMA_VERSION

    data = {"format": FORMAT_NAME, "schema": SCHEMA_VERSION, **project_with_regions().to_dict()}
    change(data)
    with pytest.raises(ValidationError) as err:
        schema.validated(data)
    assert words in schema.problem(err.value)


def test_a_characters_pose_stands_in_its_region():
    from storystudio.project.pose import PanelPose, Skeleton

    project = project_with_regions()
    shared = project.panels[1]  # Ann's own box is (0.5, 0.1, 0.9, 1.0)
    shared.poses = [PanelPose("Ann", skeleton=Skeleton.standing()), PanelPose("Bo", skeleton=Skeleton.standing())]
    guide = project.to_story().panels[1].guides[0]
    assert [box for _, box in guide.skeletons] == [(0.5, 0.1, 0.9, 1.0), (0.0, 0.0, 0.5, 1.0)]
    shared.regions = None  # side by side in tag order: Bo, then Ann
    guide = project.to_story().panels[1].guides[0]
    assert [box for _, box in guide.skeletons] == [(0.5, 0.0, 1.0, 1.0), (0.0, 0.0, 0.5, 1.0)]
