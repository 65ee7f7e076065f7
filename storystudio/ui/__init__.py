"""Everything Qt: windows, views and the inference worker. Nothing below this package imports Qt."""
