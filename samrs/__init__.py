"""samrs: segmentation datasets from remote-sensing detection datasets with SAM."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("samrs")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"

__all__ = ["__version__"]
