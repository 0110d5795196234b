#!/usr/bin/env bash
# Builds Horovod (TensorFlow + OpenMPI, no PyTorch/MXNet/Gloo) from its PyPI sdist against the
# TensorFlow of the given Python and installs it there. The wheel is cached outside the
# repository, keyed by the Horovod, TensorFlow and Python versions, so a rerun installs in
# seconds. Used by scripts/setup-test-env.sh; the images build it the same way
# (templates/dockerfile/horovod.Dockerfile.j2).
#
#   scripts/build-horovod.sh [PYTHON]        (default: python3)
#
# Environment:
#   HOROVOD_VERSION       default 0.28.1 (its last release)
#   MODELPKG_WHEEL_CACHE  default ${XDG_CACHE_HOME:-$HOME/.cache}/modelpkg/wheels
#   MAKEFLAGS             default -j$(nproc) (Horovod's own default is -j8)
#
# The one change to the sdist: the line of horovod/tensorflow/CMakeLists.txt that appends
# xla_mpi_ops.cc to TF_SOURCES is dropped. That file needs XLA headers TensorFlow >= 2.16 no
# longer ships; the XLA ops are only used with HOROVOD_ENABLE_XLA_OPS=1 (jit-compiled
# collectives), which this project never sets. The line is dropped for every TensorFlow so
# one recipe builds one kind of wheel; a sdist without that line fails the build loudly.
set -euo pipefail

# Bump when the recipe below changes (flags, patch): the cache key holds it.
RECIPE=1

die() { echo "build-horovod: error: $*" >&2; exit 1; }
say() { echo "build-horovod: $*"; }

case "${1:-}" in
    -h|--help)
        sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0 ;;
esac
if (($# > 1)); then
    echo "error: usage: $0 [PYTHON]" >&2
    exit 2
fi

PYTHON="${1:-python3}"
HOROVOD_VERSION="${HOROVOD_VERSION:-0.28.1}"
command -v "${PYTHON}" >/dev/null 2>&1 || { echo "error: no Python interpreter '${PYTHON}'" >&2; exit 2; }

# TensorFlow and Python versions of the target interpreter (no TensorFlow import: metadata).
read -r TF_VERSION PY_TAG < <("${PYTHON}" - <<'EOF'
import sys
from importlib import metadata
version = ""
for dist in ("tensorflow", "tensorflow-cpu", "tensorflow-intel", "tensorflow-aarch64"):
    try:
        version = metadata.version(dist)
        break
    except metadata.PackageNotFoundError:
        pass
print(version or "-", f"cp{sys.version_info[0]}{sys.version_info[1]}")
EOF
)
[[ "${TF_VERSION}" != "-" ]] || die "TensorFlow is not installed for ${PYTHON}; install it first"

installed_ok() {
    "${PYTHON}" - "${HOROVOD_VERSION}" <<'EOF' >/dev/null 2>&1
import sys
import horovod
import horovod.tensorflow as hvd  # loads the compiled ops: fails when TF changed under it
assert horovod.__version__ == sys.argv[1], horovod.__version__
assert hvd.mpi_built()
EOF
}

if installed_ok; then
    say "Horovod ${HOROVOD_VERSION} for TensorFlow ${TF_VERSION} already installed in ${PYTHON}"
    exit 0
fi

CACHE_ROOT="${MODELPKG_WHEEL_CACHE:-${XDG_CACHE_HOME:-${HOME}/.cache}/modelpkg/wheels}"
KEY="horovod-${HOROVOD_VERSION}-tf${TF_VERSION}-${PY_TAG}-r${RECIPE}"
CACHE_DIR="${CACHE_ROOT}/${KEY}"

shopt -s nullglob
wheels=("${CACHE_DIR}"/horovod-*.whl)
if ((${#wheels[@]} != 1)); then
    for tool in cmake g++ mpicxx; do
        command -v "${tool}" >/dev/null 2>&1 || die "${tool} is missing (apt-get install cmake g++ libopenmpi-dev)"
    done
    work="$(mktemp -d "${TMPDIR:-/tmp}/build-horovod.XXXXXX")"
    trap 'rm -rf "${work}"' EXIT
    start=${SECONDS}
    say "building Horovod ${HOROVOD_VERSION} against TensorFlow ${TF_VERSION} (${PY_TAG}); takes a few minutes"
    "${PYTHON}" -m pip download -q --no-binary :all: --no-deps -d "${work}" "horovod==${HOROVOD_VERSION}"
    sdist=("${work}"/horovod-*.tar.gz)
    ((${#sdist[@]} == 1)) || die "pip download gave no single horovod sdist in ${work}"
    tar -xzf "${sdist[0]}" -C "${work}"
    src="${work}/horovod-${HOROVOD_VERSION}"
    cmakelists="${src}/horovod/tensorflow/CMakeLists.txt"
    # shellcheck disable=SC2016 # the CMake variable is part of the literal line
    xla_line='list(APPEND TF_SOURCES "${PROJECT_SOURCE_DIR}/horovod/tensorflow/xla_mpi_ops.cc")'
    grep -qxF "${xla_line}" "${cmakelists}" \
        || die "${cmakelists} has no line '${xla_line}': the sdist changed; review the patch"
    grep -vxF "${xla_line}" "${cmakelists}" >"${cmakelists}.new"
    mv "${cmakelists}.new" "${cmakelists}"
    # setuptools + wheel for --no-build-isolation (the build must see the installed TF).
    "${PYTHON}" -c "import setuptools, wheel" >/dev/null 2>&1 \
        || "${PYTHON}" -m pip install -q setuptools wheel
    (
        export HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_MPI=1 HOROVOD_WITHOUT_PYTORCH=1 \
            HOROVOD_WITHOUT_MXNET=1 HOROVOD_WITHOUT_GLOO=1 HOROVOD_CPU_OPERATIONS=MPI
        export MAKEFLAGS="${MAKEFLAGS:--j$(nproc)}"
        unset HOROVOD_ENABLE_XLA_OPS
        "${PYTHON}" -m pip wheel -q --no-build-isolation --no-deps -w "${work}/dist" "${src}"
    ) || die "the Horovod build failed (output above)"
    built=("${work}"/dist/horovod-*.whl)
    ((${#built[@]} == 1)) || die "the build left no single wheel in ${work}/dist"
    mkdir -p "${CACHE_ROOT}"
    # Atomic: a killed build leaves no half-written cache entry.
    stage="$(mktemp -d "${CACHE_ROOT}/.${KEY}.XXXXXX")"
    chmod 755 "${stage}"
    cp "${built[0]}" "${stage}/"
    rm -rf "${CACHE_DIR}"
    mv "${stage}" "${CACHE_DIR}"
    wheels=("${CACHE_DIR}"/horovod-*.whl)
    say "built ${wheels[0]##*/} in $((SECONDS - start)) s, cached in ${CACHE_DIR}"
else
    say "using the cached wheel ${wheels[0]}"
fi

"${PYTHON}" -m pip uninstall -q -y horovod >/dev/null 2>&1 || true
"${PYTHON}" -m pip install -q "${wheels[0]}"
installed_ok || die "Horovod installed from ${wheels[0]} but 'import horovod.tensorflow' fails in ${PYTHON}"
say "Horovod ${HOROVOD_VERSION} installed for TensorFlow ${TF_VERSION} in ${PYTHON}"
