"""Named training presets (YAML), read by :func:`spiral.config.load_preset`."""
