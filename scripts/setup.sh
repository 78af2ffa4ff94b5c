#!/usr/bin/env bash
# Create .venv (seeing system site-packages, so a CUDA torch you already have is reused),
# install torch only if it is absent, then install llmpipe with the extras in LLMPIPE_EXTRAS
# (default dev; `make test` and CI add ray, so the Ray cluster tests run).
# Env: PYTHON (default python3), LLMPIPE_TORCH_SPEC (default torch==2.13.0), LLMPIPE_TORCH_INDEX
# (e.g. https://download.pytorch.org/whl/cpu or .../cu124; default: pip's configured index).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv --system-site-packages .venv
fi
VPY=.venv/bin/python
# pip, without its one line per find-links folder that does not exist on this machine (noise
# that would bury the rest of a CI log); pip's exit status is kept (pipefail)
pip_install() {
  "$VPY" -m pip install -q "$@" 2>&1 | { grep -v "^WARNING: Location '.*' is ignored" || true; } >&2
}
if "$VPY" -c "import torch" 2>/dev/null; then
  echo "setup: using existing torch $("$VPY" -c 'import torch; print(torch.__version__)')" >&2
else
  spec=${LLMPIPE_TORCH_SPEC:-torch==2.13.0}
  echo "setup: torch absent, installing $spec" >&2
  if [ -n "${LLMPIPE_TORCH_INDEX:-}" ]; then
    pip_install "$spec" --index-url "$LLMPIPE_TORCH_INDEX"
  else
    pip_install "$spec"
  fi
fi
pip_install -e ".[${LLMPIPE_EXTRAS:-dev}]"
echo "setup: ok ($("$VPY" --version), torch $("$VPY" -c 'import torch; print(torch.__version__)'))" >&2
