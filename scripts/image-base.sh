#!/usr/bin/env bash
# Make the local base image of `loopline containerize --backend buildah` (serve.image_base,
# default localhost/loopline-base:bookworm) on a machine with no Docker daemon and no access
# to an image registry: a Debian bookworm rootfs (debootstrap, minbase) with Python 3.11 and
# this machine's CA certificates (so pip inside the build reaches the package index the host
# reaches), without apt caches, package lists, docs or compilers, imported into buildah's
# storage.
#
#   scripts/image-base.sh          # as root (no sudo needed); later runs reuse the image
#
# Installs buildah and debootstrap with apt-get when they are missing (apt-get update first).
set -euo pipefail
IMAGE=${LOOPLINE_BASE_IMAGE:-localhost/loopline-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [ "$(id -u)" -ne 0 ]; then
    echo "error: scripts/image-base.sh needs root (debootstrap and buildah's storage); run it as root" >&2
    exit 1
fi
if ! command -v buildah >/dev/null || ! command -v debootstrap >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends buildah debootstrap >/dev/null
fi
if buildah images --quiet "$IMAGE" >/dev/null 2>&1; then
    echo "$IMAGE exists"
    exit 0
fi
ROOTFS=$(mktemp -d /tmp/loopline-rootfs.XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT
echo "debootstrap bookworm (minbase + python3) into $ROOTFS …"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$ROOTFS" "$MIRROR" >/dev/null
cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
# What a runtime image never needs: apt's caches and lists, docs, man pages, locales.
rm -rf "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/debconf/*-old \
    "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
    "$ROOTFS"/var/log/*.log "$ROOTFS"/var/log/apt/*
find "$ROOTFS"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'C.*' -exec rm -rf {} + 2>/dev/null || true
ln -sf /usr/bin/python3 "$ROOTFS/usr/local/bin/python"
CTR=$(buildah from scratch)
MNT=$(buildah mount "$CTR")
cp -a "$ROOTFS"/. "$MNT"/
buildah umount "$CTR" >/dev/null
buildah config --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --env PIP_CERT=/etc/ssl/certs/ca-certificates.crt --env LANG=C.UTF-8 \
    --env PYTHONDONTWRITEBYTECODE=1 --env PIP_NO_CACHE_DIR=1 --cmd /bin/bash "$CTR"
buildah commit --quiet "$CTR" "$IMAGE" >/dev/null
buildah rm "$CTR" >/dev/null
echo "made $IMAGE ($(buildah images --format '{{.Size}}' "$IMAGE"))"
