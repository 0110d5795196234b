"""modelpkg: build reproducible model packages, Dockerfiles and docs from one spec per model."""

__version__ = "0.1.0"
