"""Facts the packager's modules share, each defined here once: which variables are proxies,
which environment variables name host paths (mounted into containers), and the names of the
artifacts a build writes. Precision names are not here: they belong to the shipped code
(``models/common/precisions.py``), which the packager imports.
"""

from __future__ import annotations

import re
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


# The userinfo of a URL (scheme://user:password@host, or scheme://token@host): credentials.
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/@\s:]*)(?::([^/@\s]*))?@")


def mask_credentials(text: str) -> str:
    """``text`` with the secret part of every URL's userinfo replaced by ``***``:
    ``http://alice:S3cret@proxy:3128`` -> ``http://alice:***@proxy:3128``, a lone token
    ``https://TOKEN@host`` -> ``https://***@host``. Used on everything modelpkg prints."""

    def hide(match: re.Match[str]) -> str:
        scheme, user, password = match.group(1), match.group(2), match.group(3)
        return f"{scheme}{user}:***@" if password is not None else f"{scheme}***@"

    return _URL_USERINFO.sub(hide, text)
