"""Facts the packager's modules share, each defined here once: which variables are proxies,
which environment variables name host paths (mounted into containers), and the names of the
artifacts a build writes. Precision names are not here: they belong to the shipped code
(``models/common/precisions.py``), which the packager imports.
"""

from __future__ import annotations

from pathlib import Path

from models.common.precisions import PACKAGE_INFO  # noqa: F401  (re-exported: the package's info file)

# Proxy variables: Docker and buildah treat these as predefined build args (usable in RUN,
# never stored in the image). They go to builds as build args and to containers as env, never
# into a spec, an ENV line or a printed command in clear.
PROXY_VARS: tuple[str, ...] = tuple(
    name for base in ("http_proxy", "https_proxy", "ftp_proxy", "no_proxy", "all_proxy")
    for name in (base, base.upper())
)

# Quickstart variables whose value is a host path: mounted at the same path in a container.
PATH_SUFFIXES: tuple[str, ...] = ("_DIR", "_FILE", "_PATH")
# Path variables that are outputs: created on the host when missing, instead of an error.
OUTPUT_VARS: tuple[str, ...] = ("OUTPUT_DIR",)

# Artifacts
MANIFEST = "MANIFEST.sha256"
README = "README.md"
LIB_SH = "quickstart/common/lib.sh"  # copied to <package>/quickstart/lib.sh
WRAPPER_DIR = "wrapper_packages"  # <out>/wrapper_packages/<name>.tar.gz
CONTEXT_PACKAGE_DIR = "model_packages"  # <build context>/model_packages/<name>.tar.gz
PIP_CERT_SECRET = "pip_cert"  # the optional build secret holding a CA bundle for pip
PROJECT_LICENSE = "Apache-2.0"  # SPDX id of the project's LICENSE (labels, SBOM)
OCI_LABEL_PREFIX = "org.opencontainers.image."
IMAGE_ARCHIVE_SUFFIX = ".image.tar.gz"  # <out>/<name>.image.tar.gz: `modelpkg image save`, `docker load -i`
OCI_ARCHIVE_SUFFIX = ".oci.tar.gz"  # <out>/<name>.oci.tar.gz: `modelpkg image save --format oci`
SBOM_SUFFIX = ".sbom.cdx.json"  # <out>/<name>.sbom.cdx.json: the CycloneDX SBOM of the image build
SBOM_PATH_IN_IMAGE = "/usr/share/modelpkg/sbom.cdx.json"  # the same SBOM inside the image
DEFAULT_OUTPUT_DIR = Path("output")


def is_proxy_var(name: str) -> bool:
    return name in PROXY_VARS


def is_path_var(name: str) -> bool:
    return name.endswith(PATH_SUFFIXES)


def model_package_path(name: str, out_dir: Path) -> Path:
    return Path(out_dir) / f"{name}.tar.gz"


def wrapper_package_path(name: str, out_dir: Path) -> Path:
    return Path(out_dir) / WRAPPER_DIR / f"{name}.tar.gz"


def context_package_path(name: str) -> str:
    """Where a build context holds the model package (what the Dockerfile's ADD names)."""
    return f"{CONTEXT_PACKAGE_DIR}/{name}.tar.gz"

# The quickstart variable that selects the precision: run.sh accepts the spec's precisions.
PRECISION_VAR = "PRECISION"


# The secret part of a URL's userinfo is masked in everything printed; the rule lives with the
# shipped code (the launcher uses it too).
from models.common.redact import mask_credentials  # noqa: E402,F401
