#!/usr/bin/env bash
# System packages that optional tests use (the `ceph` marker: a single-node Ceph RGW from Debian's
# packages, see scripts/ceph-dev-rgw.sh). Called only by .ci/run, so it does not wait for CI=true
# (not every runner sets it); LLMPIPE_SKIP_SYSTEM_DEPS=1 skips it. Best effort: a failed install
# only means the ceph tests skip, saying why. Idempotent: a no-op when the binaries are there.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${LLMPIPE_SKIP_SYSTEM_DEPS:-0}" != 1 ]; then
  bash scripts/ceph-install.sh || echo "ci-system-deps: ceph install failed; ceph tests will skip" >&2
fi
exit 0
