"""The story sampler: plans a story's pictures, encodes their prompts and styles, and denoises them."""
