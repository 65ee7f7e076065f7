"""Generation defaults that fit this computer and the model (no Qt, no torch).

A new project starts at the size its model family draws best at and with as
many steps as the computer can afford: on a computer without a graphics card
the catalog recommends Stable Diffusion 1.5 (``catalog.recommend``), so new
projects start at 512 x 512 with fewer steps; with a card, at the reference
demo's 768 x 768 and 35 steps for SDXL.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..engine.models.catalog import CatalogError, recommend
from ..project.model import ProjectSettings
from .machine import Machine

NATIVE_SIZE = {"sd15": 512, "sdxl": 768}  # SDXL is trained at 1024; 768 is what StoryDiffusion draws at
STEPS = {True: 35, False: 20}  # with a graphics card / on the processor


@dataclass(frozen=True)
class Fitting:
    width: int
    height: int
    steps: int
    arch: str
    reason: str  # in words, for the status bar


def recommended_arch(machine: Machine | None) -> str:
    try:
        entry = recommend(machine.gpu_gb if machine is not None and machine.gpu else None)
    except CatalogError:
        return "sdxl"
    return entry.arch or "sdxl"


def fitting(machine: Machine | None, arch: str | None = None) -> Fitting:
    """The size and steps for a model of family ``arch`` (or the one the catalog recommends here)."""
    gpu = machine is None or machine.gpu
    family = arch if arch in NATIVE_SIZE else recommended_arch(machine)
    side = NATIVE_SIZE[family]
    where = "this computer's graphics card" if gpu else "this computer's processor (no graphics card found)"
    return Fitting(side, side, STEPS[gpu], family,
                   f"{side} x {side} and {STEPS[gpu]} steps suit {family.upper()} on {where}")


def at_defaults(settings: ProjectSettings, machine: Machine | None = None, arch: str | None = None) -> bool:
    """True while size and steps are still a default (the built-in one, or the one that fits here)."""
    now = (settings.width, settings.height, settings.steps)
    plain = ProjectSettings()
    candidates = {(plain.width, plain.height, plain.steps)}
    for family in (arch, None, *NATIVE_SIZE):
        f = fitting(machine, family)
        candidates.add((f.width, f.height, f.steps))
    return now in candidates


def apply_fitting(settings: ProjectSettings, machine: Machine | None, arch: str | None = None) -> Fitting:
    f = fitting(machine, arch)
    settings.width, settings.height, settings.steps = f.width, f.height, f.steps
    return f
