"""The package version, from the installed metadata (one place: pyproject.toml)."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pimc")
except PackageNotFoundError:       # run from a source tree that was never installed
    __version__ = "0+unknown"
