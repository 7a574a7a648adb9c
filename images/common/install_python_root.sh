#!/bin/sh
# Build stage of the Python images: installs the staged wheels (pinned by sha256, no index, no
# network; pip runs from its own wheel, so the base needs none) and assembles the root filesystem
# of the FROM-scratch image in /rootfs. Usage: install_python_root.sh UID USER (IMG-01, IMG-02).
set -eu
site="$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
set -- "$@" /wheels/pip-*.whl
python3 "$3/pip" install --quiet --no-index --find-links /wheels \
    --require-hashes --no-deps --only-binary=:all: --no-warn-script-location \
    --root-user-action=ignore --target "/rootfs$site" -r /build/requirements.txt
python3 /build/assemble_rootfs.py /rootfs --uid "$1" --user "$2" --site "$site"
