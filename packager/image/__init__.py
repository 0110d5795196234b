"""Container images from the rendered Dockerfiles: Docker SDK and daemonless buildah builders
behind one protocol (`base.Builder`), chosen by `select.select_builder`."""

from packager.image.base import (
    Builder,
    BuilderUnavailableError,
    BuildRequest,
    BuildResult,
    ImageBuildError,
    ImageError,
    ImageRunError,
    ImageUsageError,
    Mount,
    RunRequest,
    Secret,
)
from packager.image.select import BUILDER_NAMES, select_builder

__all__ = [
    "BUILDER_NAMES",
    "Builder",
    "BuilderUnavailableError",
    "BuildRequest",
    "BuildResult",
    "ImageBuildError",
    "ImageError",
    "ImageRunError",
    "ImageUsageError",
    "Mount",
    "RunRequest",
    "Secret",
    "select_builder",
]
