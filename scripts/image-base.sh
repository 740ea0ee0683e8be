#!/usr/bin/env bash
# Make a local base image for `loopline containerize --backend buildah` on a machine with
# no Docker daemon and no registry: a Debian bookworm rootfs (debootstrap) with Python 3.11,
# this machine's CA certificates (so pip and uv inside the build reach the package index
# the host reaches), imported into buildah's storage as localhost/loopline-base:bookworm.
#
#   sudo scripts/image-base.sh            # once; later runs reuse the image
#
# Needs root, debootstrap and buildah (Debian: apt-get install -y debootstrap buildah).
set -euo pipefail
IMAGE=${LOOPLINE_BASE_IMAGE:-localhost/loopline-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if ! command -v buildah >/dev/null || ! command -v debootstrap >/dev/null; then
    apt-get install -y -q buildah debootstrap >/dev/null
fi
if buildah images --quiet "$IMAGE" >/dev/null 2>&1; then
    echo "$IMAGE exists"
    exit 0
fi
ROOTFS=$(mktemp -d /tmp/loopline-rootfs.XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT
echo "debootstrap bookworm into $ROOTFS …"
debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
    bookworm "$ROOTFS" "$MIRROR" >/dev/null
cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
rm -f "$ROOTFS"/usr/lib/python3*/EXTERNALLY-MANAGED   # the Bento's Dockerfile runs `pip install uv`
ln -sf /usr/bin/python3 "$ROOTFS/usr/local/bin/python"
ln -sf /usr/bin/pip3 "$ROOTFS/usr/local/bin/pip"
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb
CTR=$(buildah from scratch)
MNT=$(buildah mount "$CTR")
cp -a "$ROOTFS"/. "$MNT"/
buildah umount "$CTR" >/dev/null
buildah config --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --env PIP_CERT=/etc/ssl/certs/ca-certificates.crt --env UV_NATIVE_TLS=1 \
    --env LANG=C.UTF-8 --cmd /bin/bash "$CTR"
buildah commit --quiet "$CTR" "$IMAGE" >/dev/null
buildah rm "$CTR" >/dev/null
echo "made $IMAGE"
