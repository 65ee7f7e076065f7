"""Words the window shows that follow from data (no Qt): its title, times in the user's terms."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path


def window_title(story_title: str, path: str | None, dirty: bool) -> str:
    """One rule for the title bar: the story's title, the file it is saved in (if any), a star when changed."""
    parts = [story_title.strip() or "Untitled"]
    if path:
        parts.append(Path(path).name)
    return " — ".join(parts) + ("*" if dirty else "") + " - StoryStudio"


def readable_time(iso: str, now: datetime | None = None) -> str:
    """An ISO 8601 time as the user reads it, in local time: "today at 14:05", "yesterday at 09:30",
    "Tuesday 3 March 2026 at 14:05"; the text as it is when it is not a time."""
    try:
        when = datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return str(iso)
    when = when.astimezone() if when.tzinfo else when
    now = now or datetime.now(when.tzinfo)
    clock = f"{when.hour:02d}:{when.minute:02d}"
    days = (now.date() - when.date()).days
    if days == 0:
        return f"today at {clock}"
    if days == 1:
        return f"yesterday at {clock}"
    return f"{when.strftime('%A')} {when.day} {when.strftime('%B %Y')} at {clock}"
