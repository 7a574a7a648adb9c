"""Builds qcstack's images from local inputs: a Debian base, wheels and .debs pinned, Go tools."""
