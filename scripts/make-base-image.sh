#!/usr/bin/env bash
# Builds a minimal Debian bookworm base image for the model package images without any
# registry: `debootstrap --variant=minbase` into a temp dir, then `buildah from scratch`,
# `buildah add` of the root filesystem tarball and `buildah commit`.
#
# Usage: scripts/make-base-image.sh [IMAGE]      (default: localhost/modelpkg-base:bookworm)
# Env:   MODELPKG_DEBIAN_MIRROR  mirror for debootstrap (default: http://deb.debian.org/debian)
#        MODELPKG_STORAGE_DRIVER buildah storage driver (default: buildah's own, e.g. overlay)
#        MODELPKG_REBUILD_BASE=1 rebuild even when IMAGE already exists
# Prints the time each step took; skips everything when IMAGE is already in buildah storage.
set -euo pipefail

IMAGE="${1:-localhost/modelpkg-base:bookworm}"
MIRROR="${MODELPKG_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE="bookworm"

buildah_cmd=(buildah)
if [[ -n "${MODELPKG_STORAGE_DRIVER:-}" ]]; then
    buildah_cmd+=(--storage-driver "${MODELPKG_STORAGE_DRIVER}")
fi

for tool in buildah debootstrap tar; do
    if ! command -v "${tool}" >/dev/null 2>&1; then
        echo "make-base-image: '${tool}' is not installed; install it with: apt-get install -y ${tool}" >&2
        exit 1
    fi
done
if [[ $(id -u) -ne 0 ]]; then
    echo "make-base-image: debootstrap needs root; run this script as root (or with sudo)" >&2
    exit 1
fi

if [[ "${MODELPKG_REBUILD_BASE:-0}" != "1" ]] && "${buildah_cmd[@]}" inspect --type image "${IMAGE}" >/dev/null 2>&1; then
    echo "make-base-image: ${IMAGE} already exists in buildah storage; skipping (MODELPKG_REBUILD_BASE=1 rebuilds it)"
    exit 0
fi

workdir="$(mktemp -d "${TMPDIR:-/tmp}/modelpkg-base.XXXXXX")"
container=""
cleanup() {
    if [[ -n "${container}" ]]; then
        "${buildah_cmd[@]}" rm "${container}" >/dev/null 2>&1 || true
    fi
    rm -rf "${workdir}"
}
trap cleanup EXIT

step_start=0
start_step() {
    step_start=${SECONDS}
    echo "make-base-image: $*"
}
end_step() {
    echo "make-base-image:   done in $((SECONDS - step_start)) s"
}

total_start=${SECONDS}
rootfs="${workdir}/rootfs"

start_step "debootstrap --variant=minbase ${SUITE} from ${MIRROR}"
debootstrap --variant=minbase "${SUITE}" "${rootfs}" "${MIRROR}" >"${workdir}/debootstrap.log" 2>&1 || {
    echo "make-base-image: debootstrap failed; last lines of its log:" >&2
    tail -n 30 "${workdir}/debootstrap.log" >&2
    exit 1
}
# Keep the image small and apt usable inside builds: no caches, the security suite enabled.
rm -rf "${rootfs}/var/cache/apt/archives/"*.deb "${rootfs}/var/lib/apt/lists/"*
cat >"${rootfs}/etc/apt/sources.list" <<SOURCES
deb ${MIRROR} ${SUITE} main
deb ${MIRROR} ${SUITE}-updates main
deb http://deb.debian.org/debian-security ${SUITE}-security main
SOURCES
end_step

start_step "packing the root filesystem"
tar --numeric-owner -C "${rootfs}" -cf "${workdir}/rootfs.tar" .
end_step

start_step "buildah from scratch + add + commit -> ${IMAGE}"
container="$("${buildah_cmd[@]}" from scratch)"
"${buildah_cmd[@]}" add "${container}" "${workdir}/rootfs.tar" / >/dev/null
"${buildah_cmd[@]}" config \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 \
    --cmd /bin/bash \
    --label org.opencontainers.image.description="Debian ${SUITE} minbase made by modelpkg scripts/make-base-image.sh" \
    "${container}"
"${buildah_cmd[@]}" commit --quiet --rm "${container}" "${IMAGE}" >/dev/null
container=""
end_step

echo "make-base-image: built ${IMAGE} in $((SECONDS - total_start)) s"
