"""Rendering a story on several GPUs, or on GPUs elsewhere, through Ray (an optional extra).

- :mod:`.cluster` (torch-free): whether Ray is installed, what a cluster
  address may look like, connecting to one and shutting a local one down.
- :mod:`.actors`: the Ray actor that holds one loaded model (one per GPU) and
  the small board actor through which progress, previews and cancel travel.
- :mod:`.ray_story`: :class:`~.ray_story.RayStoryEngine`, the driver side: it
  plans the story once, spreads its panel batches over the actors, retries a
  dead actor's batches on the others and hands back a
  :class:`~..story.pipeline.StoryResult` as a local render does.

See docs/ENGINE.md ("Rendering through Ray").
"""
