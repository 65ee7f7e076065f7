"""Picture models: the catalog, downloads, the models on this computer, and loading them.

``base`` is torch-free (families, memory modes, where models live); the GUI
thread imports it. ``loading`` brings torch and diffusers.
"""
