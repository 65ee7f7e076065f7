"""StoryStudio: comics with the same characters in every panel."""

__version__ = "0.1.0"
