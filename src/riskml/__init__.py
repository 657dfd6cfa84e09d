"""riskml: simulate, train, explain and batch-score consumer credit-line risk."""

import os
from importlib.metadata import PackageNotFoundError, version

# LightGBM's OpenMP threads spin while they wait; on a busy machine (two fits, a sweep, a test run) that
# made fits 8-10x slower. Passive waiting is set here, before LightGBM loads its OpenMP runtime, so that
# every entry point (python -m riskml.<stage>) runs as fast by hand as under make; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
    __version__ = version("riskml")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"
