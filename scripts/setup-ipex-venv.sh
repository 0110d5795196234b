#!/usr/bin/env bash
# Creates .venv-ipex in the checkout: torch 2.8 + Intel Extension for PyTorch 2.8 (IPEX's last
# release, which pairs with torch 2.8 only) and what models/bert_large/pytorch imports, for
# tests/pytorch/test_ipex.py and `.venv-ipex/bin/python benchmarks/pytorch_train_step.py`.
# The main environment's torch (2.13) has no IPEX build. Skipped when the venv already imports
# both at the pinned versions. PyPI's torch 2.8 is the CUDA build (no CPU build of it is on
# PyPI): ~4 GB download, ~6.8 GB venv, 3-7 minutes on 2 cores depending on the network.
# The wheels are kept in a wheelhouse outside the checkout (MODELPKG_WHEELHOUSE, default
# ~/.cache/modelpkg/wheels; pip's own cache stays empty with this machine's registry), so a
# fresh clone (CI) on the same machine installs them without downloading again.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=${MODELPKG_IPEX_VENV:-.venv-ipex}
WHEELS="${MODELPKG_WHEELHOUSE:-${HOME}/.cache/modelpkg/wheels}/ipex-2.8.0"
TORCH_VERSION=2.8.0
IPEX_VERSION=2.8.0

if "${VENV}/bin/python" - "${TORCH_VERSION}" "${IPEX_VERSION}" >/dev/null 2>&1 <<'PY'
import sys
import intel_extension_for_pytorch as ipex
import numpy, safetensors, torch  # noqa: F401,E401
assert torch.__version__.split("+")[0] == sys.argv[1], torch.__version__
assert ipex.__version__.split("+")[0] == sys.argv[2], ipex.__version__
PY
then
    echo "setup: ${VENV} (torch ${TORCH_VERSION}, IPEX ${IPEX_VERSION}) already present"
    exit 0
fi

echo "setup: creating ${VENV} (torch ${TORCH_VERSION} + intel-extension-for-pytorch ${IPEX_VERSION}; ~4 GB download on first use)"
start=${SECONDS}
rm -rf "${VENV}"
python3 -m venv "${VENV}"
# numpy, safetensors, crc32c: what models/bert_large/pytorch and models/bert_large/tfrecord.py
# import (the package image's PIP_PACKAGES); the test helpers use only these and the stdlib.
PACKAGES=("torch==${TORCH_VERSION}" "intel-extension-for-pytorch==${IPEX_VERSION}"
          numpy safetensors crc32c)
mkdir -p "${WHEELS}"
# fetches only the wheels the wheelhouse lacks, then installs from it alone
"${VENV}/bin/python" -m pip download -q -d "${WHEELS}" "${PACKAGES[@]}"
"${VENV}/bin/python" -m pip install -q --no-index --find-links "${WHEELS}" "${PACKAGES[@]}"
"${VENV}/bin/python" -c "import torch, intel_extension_for_pytorch as ipex; print('setup: ${VENV}: torch', torch.__version__, '+ IPEX', ipex.__version__)"
echo "setup: ${VENV} took $((SECONDS - start)) s"
