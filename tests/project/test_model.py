"""Tests for the project document: panels, characters, the image store and the story views."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from storystudio.project.animatic import Animatic
from storystudio.project import (
    ImageVersion,
    Project,
    ProjectCharacter,
    ProjectPanel,
    ProjectSettings,
    ScriptError,
    Story,
    load_script,
    parse_script,
)
from storystudio.project.layout import auto_layout
from storystudio.project.story import Character, Panel

EXAMPLE = Path(__file__).parents[2] / "resources/examples/lighthouse.story.txt"


def png(color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def example() -> Project:
    return Project.example()


# ---- panels ------------------------------------------------------------------


def test_panel_characters_in_order_without_repeats():
    panel = ProjectPanel(prompt="[Tom] hands [ Ann ] a cup while [Tom] smiles at [Bo]")
    assert panel.characters() == ["Tom", "Ann", "Bo"]
    assert panel.characters(["Ann", "Tom"]) == ["Tom", "Ann"]
    assert not panel.no_character


def test_panel_without_tags_has_no_character():
    assert ProjectPanel(prompt="an empty street in the rain").no_character
    # a stray [NC] never counts as a character
    assert ProjectPanel(prompt="[NC] fog over the harbour").characters() == []


def test_chosen_version():
    panel = ProjectPanel(prompt="[Ann] waves")
    assert panel.chosen_version is None
    panel.versions = [ImageVersion("a.png"), ImageVersion("b.png")]
    panel.chosen = 1
    assert panel.chosen_version.image == "b.png"
    panel.chosen = 5  # stale index
    assert panel.chosen_version is None


def test_new_objects_get_distinct_hex_ids():
    ids = {ProjectPanel(prompt="x").id for _ in range(20)} | {ProjectCharacter(name="A").id for _ in range(20)}
    assert len(ids) == 40
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_chosen_reference_versions_follow_the_picks():
    character = ProjectCharacter(name="Ann", references=[ImageVersion(f"{i}.png") for i in range(3)])
    character.chosen_references = [2, 0, 9]
    assert [v.image for v in character.chosen_reference_versions] == ["2.png", "0.png"]


# ---- lookups -------------------------------------------------------------------


def test_lookups(example):
    mira = example.characters[0]
    assert example.character_by_id(mira.id) is mira
    assert example.character_by_name("Tobias") is example.characters[1]
    assert example.character_by_name("tobias") is None
    assert example.character_by_id("nope") is None
    third = example.panels[2]
    assert example.panel_by_id(third.id) is third
    assert example.panel_by_id("nope") is None
    assert example.panel_index(third.id) == 2
    with pytest.raises(KeyError):
        example.panel_index("nope")


# ---- story views ---------------------------------------------------------------


def test_example_project(example):
    assert example.title == "Lighthouse"
    assert [c.name for c in example.characters] == ["Mira", "Tobias"]
    assert len(example.panels) == 8
    assert example.panels[6].no_character
    assert not example.panels[6].prompt.startswith("[")
    assert example.panels[7].characters() == ["Mira", "Tobias"]
    assert example.settings == ProjectSettings()


def test_example_has_dialogue_so_its_first_page_has_speech_balloons(example):
    """A script carries no dialogue: the example's lines come from lighthouse.dialogue.json beside it."""
    assert example.panels[2].dialogue == "Hello? Is anybody home?"
    assert example.panels[7].dialogue.splitlines() == ["You kept the light burning.", "We both did."]
    assert all(p.caption for p in example.panels)
    layout = auto_layout(example.panels)
    first = layout.pages[0]
    speech = [b for b in first.balloons if b.kind == "speech"]
    assert len(speech) >= 3 and all(b.tied and b.text for b in speech)
    assert {b.text for b in speech} >= {"Hello? Is anybody home?"}


def test_to_story_uses_panel_ids_as_keys(example):
    example.panels[3].variation = 2
    story = example.to_story()
    assert isinstance(story, Story)
    assert story.title == "Lighthouse"
    assert [c.name for c in story.characters] == ["Mira", "Tobias"]
    assert story.characters[1].description == example.characters[1].description
    assert [p.key for p in story.panels] == [p.id for p in example.panels]
    assert story.panels[3].variation == 2
    assert story.panels[0].characters == ["Mira"]
    assert story.panels[6].characters == []
    assert story.panels[7].characters == ["Mira", "Tobias"]
    assert story.panels[0].caption == "Mira had never been this far from the village."
    assert "curly copper hair" in story.expand(story.panels[0])


def test_to_story_leaves_out_tags_of_unknown_characters(example):
    example.panels[0].prompt = "[Mira] meets [Stranger] on the beach"
    assert example.to_story().panels[0].characters == ["Mira"]


def test_reordering_panels_keeps_their_keys(example):
    before = {p.prompt: p.key for p in example.to_story().panels}
    example.panels.reverse()
    after = {p.prompt: p.key for p in example.to_story().panels}
    assert after == before


def test_the_engine_never_sees_a_leading_nc_typed_in_the_app():
    project = Project.example()
    project.panels[0].prompt = "  [NC] fog over the harbour"
    project.panels[1].prompt = "[ NC ]rain"
    story = project.to_story()
    assert [p.prompt for p in story.panels[:2]] == ["fog over the harbour", "rain"]
    assert story.expand(story.panels[0]) == "fog over the harbour" and story.panels[0].characters == []
    assert project.panels[0].prompt == "  [NC] fog over the harbour"  # the project keeps what was typed


def test_from_story_makes_fresh_ids_and_strips_nc():
    story = Story(
        characters=[Character("Ann", "a girl")],
        panels=[Panel("k1", "[Ann] runs", "Go!", ["Ann"], variation=3), Panel("k2", "[NC] a tree", "", [])],
        title="run",
    )
    first = Project.from_story(story)
    second = Project.from_story(story, title="Other")
    assert first.title == "run" and second.title == "Other"
    assert [p.prompt for p in first.panels] == ["[Ann] runs", "a tree"]
    assert first.panels[0].caption == "Go!"
    assert first.panels[0].variation == 3
    assert first.panels[1].no_character
    assert {p.id for p in first.panels}.isdisjoint({p.id for p in second.panels})
    assert "k1" not in {p.id for p in first.panels}
    assert first.characters[0].description == "a girl"
    assert first.id != second.id


def test_export_script_reads_back_as_the_example(example):
    original = load_script(EXAMPLE)
    again = parse_script(example.export_script())
    assert [(c.name, c.description) for c in again.characters] == [
        (c.name, c.description) for c in original.characters
    ]
    assert [(p.prompt, p.caption, p.characters) for p in again.panels] == [
        (p.prompt, p.caption, p.characters) for p in original.panels
    ]


def test_import_script_into_empty_project(example):
    project = Project(title="mine")
    project.import_script(example.export_script())
    assert project.title == "mine"
    assert project.export_script().splitlines()[1:] == example.export_script().splitlines()[1:]


def test_import_script_keeps_work_on_unchanged_panels_and_characters(example):
    first, last = example.panels[0], example.panels[-1]
    example.add_version(first.id, png(), {"seed": 1})
    first.dialogue = "Hello?"
    first.variation = 4
    mira = example.characters[0]
    mira.photo = example.add_image(png((1, 2, 3)))
    lines = example.export_script().splitlines()
    lines[0] = "// edited outside"
    lines[2] = "[Tobias] a retired sailor"  # new description
    lines[4] = lines[4].replace("# Mira had never", "# Mira had rarely")  # new caption, same prompt
    lines[-1] = "[Tobias] waves goodbye # The end."  # replaces the last panel
    example.import_script("\n".join(lines))

    assert example.characters[0] is mira and mira.photo is not None
    assert example.characters[1].description == "a retired sailor"
    assert example.panels[0] is first
    assert first.caption.startswith("Mira had rarely")
    assert first.dialogue == "Hello?" and first.variation == 4 and first.chosen == 0
    assert len(example.panels) == 8
    assert example.panels[-1] is not last
    assert example.panels[-1].prompt == "[Tobias] waves goodbye"
    assert example.panels[-1].versions == []


def test_import_script_keeps_the_pages_lettering_in_step(example):
    example.layout = auto_layout(example.panels)
    first, last = example.panels[0], example.panels[-1]
    lines = example.export_script().splitlines()
    lines[4] = lines[4].replace("# Mira had never", "# Mira had rarely")
    lines[-1] = "[Tobias] waves goodbye # The end."  # the last panel is replaced by a new one
    example.import_script("\n".join(lines))
    caption = next(b for p in example.layout.pages for b in p.balloons if b.panel == first.id and b.source == "caption")
    assert caption.text.startswith("Mira had rarely")
    assert last.id not in [pid for p in example.layout.pages for pid in p.panels()]
    assert not any(b.panel == last.id for p in example.layout.pages for b in p.balloons)


def test_import_script_with_mistakes_changes_nothing(example):
    before = example.to_dict()
    with pytest.raises(ScriptError):
        example.import_script("[Ann] a girl\n\n[Anne] runs\n")
    assert example.to_dict() == before


def test_export_script_refuses_unwritable_text(example):
    example.panels[0].prompt = "line one\nline two"
    with pytest.raises(ValueError):
        example.export_script()


# ---- the image store -------------------------------------------------------------


def test_add_image_names_and_rejects_non_png(example):
    data = png()
    name = example.add_image(data)
    other = example.add_image(data)
    assert name != other
    assert name.startswith("img-") and name.endswith(".png") and len(name) == len("img-") + 32 + len(".png")
    assert example.images[name] == data
    with pytest.raises(ValueError):
        example.add_image(b"GIF89a....")


def test_add_version_appends_and_chooses(example):
    panel = example.panels[1]
    parameters = {"prompt": "x", "seed": 7, "batch": ["a"]}
    assert example.add_version(panel.id, png((1, 1, 1)), parameters) == 0
    assert example.add_version(panel.id, png((2, 2, 2)), {"seed": 8}) == 1
    assert panel.chosen == 1
    assert panel.chosen_version.parameters == {"seed": 8}
    assert example.images[panel.versions[0].image] == png((1, 1, 1))
    parameters["batch"].append("b")  # the stored copy is independent
    assert panel.versions[0].parameters["batch"] == ["a"]
    assert panel.versions[0].created
    with pytest.raises(KeyError):
        example.add_version("nope", png(), {})


def test_add_reference_does_not_pick_it(example):
    mira = example.characters[0]
    assert example.add_reference(mira.id, png(), {"seed": 3}) == 0
    assert example.add_reference(mira.id, png(), {"seed": 4}) == 1
    assert mira.chosen_references == []
    assert mira.references[1].parameters == {"seed": 4}
    with pytest.raises(KeyError):
        example.add_reference("nope", png(), {})


def test_unused_images(example):
    panel = example.panels[0]
    example.add_version(panel.id, png((1, 0, 0)), {})
    example.add_version(panel.id, png((2, 0, 0)), {})
    reference = example.characters[1]
    example.add_reference(reference.id, png((3, 0, 0)), {})
    photo = example.add_image(png((4, 0, 0)))
    example.characters[0].photo = photo
    loose = example.add_image(png((5, 0, 0)))
    assert example.unused_images() == [loose]

    dropped = panel.versions.pop(0)
    panel.chosen = 0
    assert example.unused_images() == sorted([loose, dropped.image])
    example.characters[0].photo = None
    assert photo in example.unused_images()
    assert example.referenced_images() == {panel.versions[0].image, reference.references[0].image}


# ---- JSON ----------------------------------------------------------------------------


def test_to_dict_round_trip(example):
    panel = example.panels[2]
    example.add_version(panel.id, png(), {"seed": 1, "consistency": {"rate_fine": 0.5}})
    panel.dialogue = "Hello"
    panel.duration = 2.5
    panel.size = (640, 960)
    example.characters[0].locked = True
    example.add_reference(example.characters[0].id, png(), {})
    example.characters[0].chosen_references = [0]
    example.settings.model = "some/model"
    example.settings.style = "Comic book"
    example.layout = auto_layout(example.panels[:5])
    example.animatic = Animatic(fps=12)
    data = example.to_dict()
    assert "images" not in data
    json.dumps(data)  # plain JSON data
    again = Project.from_dict(json.loads(json.dumps(data)))
    assert again.to_dict() == data
    assert again.panels[2].duration == 2.5
    assert again.panels[2].size == (640, 960) and data["panels"][2]["size"] == [640, 960]
    assert again.panels[0].size is None and data["panels"][0]["size"] is None
    assert again.characters[0].references[0].image == example.characters[0].references[0].image
    assert [p.panels() for p in again.layout.pages] == [p.panels() for p in example.layout.pages]
    # the opaque parts are copies, not shared
    data["layout"]["pages"][0]["template"] = "changed"
    data["animatic"]["fps"] = 30
    assert example.layout.pages[0].template != "changed" and example.animatic.fps == 12


def test_panel_size_reaches_the_story_and_older_data_has_none(example):
    example.panels[1].size = (512, 768)
    story = example.to_story()
    assert story.panels[1].size == (512, 768) and story.panels[0].size is None
    older = example.panels[1].to_dict()
    del older["size"]  # a panel saved before panels had their own size
    assert ProjectPanel.from_dict(older).size is None


def test_settings_from_dict_fills_defaults_and_floats():
    settings = ProjectSettings.from_dict({"steps": 20, "guidance": 7, "rate": 1})
    assert settings.steps == 20
    assert settings.guidance == 7.0 and isinstance(settings.guidance, float)
    assert isinstance(settings.rate, float)
    assert settings.width == 768 and settings.scheduler == "ddim"


def test_settings_defaults_match_the_engine():
    from storystudio.engine.attention.config import ConsistencyConfig
    from storystudio.engine.story.settings import GenerationSettings

    ours, engine = ProjectSettings(), GenerationSettings()
    for name in ("steps", "width", "height", "guidance", "seed", "style", "negative_prompt", "scheduler",
                 "freeu", "id_length"):
        assert getattr(ours, name) == getattr(engine, name), name
    assert ours.rate == ConsistencyConfig().rate_coarse == ConsistencyConfig().rate_fine


def test_touch_updates_modified():
    project = Project(created="2000-01-01T00:00:00+00:00")
    assert project.modified == "2000-01-01T00:00:00+00:00"
    project.touch()
    assert project.modified > "2000"
    assert project.modified != "2000-01-01T00:00:00+00:00"
