"""Generation without Qt: consistent attention, the story pipeline, model loading, styles."""
