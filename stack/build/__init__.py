"""Builds qcstack's images from local inputs: a Debian base rootfs and hash-pinned wheels."""
