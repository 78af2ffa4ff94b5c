#!/usr/bin/env bash
# Install the Debian packages that scripts/ceph-dev-rgw.sh needs (one mon, one mgr, one OSD and an
# RGW on this machine). Idempotent: does nothing when every daemon binary is already on PATH.
# Needs root (or sudo) and a Debian/Ubuntu apt; tested with Debian 12's Ceph 16.2.x (pacific).
set -euo pipefail

PKGS=(ceph-mon ceph-osd ceph-mgr radosgw ceph-common)
BINS=(ceph-mon ceph-osd ceph-mgr radosgw ceph radosgw-admin monmaptool)

missing=0
for b in "${BINS[@]}"; do
  command -v "$b" >/dev/null 2>&1 || missing=1
done
if [ "$missing" = 0 ]; then
  echo "ceph-install: already installed ($(ceph --version 2>/dev/null | awk '{print $3}'))" >&2
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "ceph-install: apt-get not found; install ${PKGS[*]} with your package manager" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "ceph-install: needs root or sudo" >&2; exit 1; }
  SUDO="sudo"
fi

# About a minute on Debian 12 (~115 packages with their recommends, the set this was tested with).
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${PKGS[@]}"
echo "ceph-install: installed $(ceph --version | awk '{print $3}')" >&2
