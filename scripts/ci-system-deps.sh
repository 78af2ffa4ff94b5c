#!/usr/bin/env bash
# System packages that optional tests use (the `ceph` marker). Best effort: tests that need
# them skip, saying why, where they are absent.
set -uo pipefail
if [ "${CI:-}" = "true" ] && [ -x scripts/ceph-install.sh ]; then
  bash scripts/ceph-install.sh || echo "ci-system-deps: ceph install failed; ceph tests will skip" >&2
fi
exit 0
