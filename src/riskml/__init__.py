"""riskml: simulate, train, explain and batch-score consumer credit-line risk."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("riskml")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"
