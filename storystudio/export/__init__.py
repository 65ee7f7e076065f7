"""Exports as pure functions of a project (PDF, CBZ, PNG pages, MP4): not built yet."""
