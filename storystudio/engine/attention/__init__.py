"""Consistent self-attention (StoryDiffusion) as diffusers attention processors, and the character bank."""
