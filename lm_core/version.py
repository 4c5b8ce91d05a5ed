"""The installed distribution's name and version, for every command's `--version`."""

from __future__ import annotations

from importlib import metadata

# The name on the package index (`lm` there is another project); the commands stay
# lm, lm-daemon and lm-tui.
DIST_NAME = "lm-license-pool"


def version() -> str:
    """The installed version of lm ("unknown" when run from a tree that is not installed)."""
    try:
        return metadata.version(DIST_NAME)
    except metadata.PackageNotFoundError:
        return "unknown"


def version_line(command: str) -> str:
    """``lm 0.1.0 (lm-license-pool)``: what `COMMAND --version` prints."""
    return f"{command} {version()} ({DIST_NAME})"
