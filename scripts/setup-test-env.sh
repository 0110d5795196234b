#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine: system packages
# (OpenMPI, numactl, OpenSSH client and server for the two-host tests, buildah,
# debootstrap, shellcheck) and the Python packages (modelpkg in editable mode with its
# TensorFlow, PyTorch and test extras). Safe to run again.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

APT_PACKAGES=(
    openmpi-bin libopenmpi-dev numactl
    openssh-client openssh-server
    buildah debootstrap fuse-overlayfs
    shellcheck
    lbzip2
    cmake g++ make
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "${pkg}" 2>/dev/null | grep -q "install ok installed" || missing+=("${pkg}")
done
if ((${#missing[@]})); then
    echo "setup: installing system packages: ${missing[*]}"
    SUDO=""
    if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
    ${SUDO} apt-get update -qq
    DEBIAN_FRONTEND=noninteractive ${SUDO} apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

echo "setup: installing Python packages"
# torch is pinned to the CPU build; a bare 'torch' would pull several GB of CUDA wheels.
python3 -m pip install -q "torch==2.13.0" -e ".[tensorflow,pytorch,test]"
# keras-hub: the peer column of benchmarks/tf_train_step.py. --no-deps: its tensorflow-text
# requirement would install the full `tensorflow` wheel over tensorflow-cpu (its other
# requirements are not needed to build a BertBackbone; regex, rich, absl come with the above).
python3 -m pip install -q --no-deps "keras-hub==0.32.0"
# TensorFlow 2.15.1 / Keras 2.15 (what Habana's Gaudi bridge pins) in its own venv, for
# tests/tf215 (the TF BERT suite on Keras 2).
if .venv-tf215/bin/python -c "import tensorflow as tf; assert tf.__version__ == '2.15.1'" \
        >/dev/null 2>&1; then
    echo "setup: .venv-tf215 (TensorFlow 2.15.1) already present"
else
    echo "setup: creating .venv-tf215 (TensorFlow 2.15.1, Keras 2)"
    python3 -m venv .venv-tf215
    .venv-tf215/bin/pip install -q tensorflow-cpu==2.15.1 'numpy<2' tokenizers mpi4py pytest \
        hypothesis pyyaml
fi
# Horovod 0.28.1 (TensorFlow + Open MPI) for the main interpreter's TensorFlow, built from its
# sdist once and cached outside the checkout (scripts/build-horovod.sh; reruns take seconds).
bash scripts/build-horovod.sh python3
# torch 2.8 + Intel Extension for PyTorch 2.8 in its own venv, for tests/pytorch/test_ipex.py
# (the torch above has no IPEX build).
bash scripts/setup-ipex-venv.sh
echo "setup: done"
