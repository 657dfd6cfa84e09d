"""riskml's Hydra configs, shipped inside the package as ``riskml.conf``.

Hydra imports this package to read the YAML files, so the structured configs
register here: the engine's rates have one source, ``riskml.simulate.EngineParams``,
which ``generate.yaml`` takes as the ``engine: defaults`` option and overrides
only where it says so.
"""

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from riskml.simulate import EngineParams

_engine = OmegaConf.structured(EngineParams)  # typed keys: a misspelt or mistyped override fails at compose
OmegaConf.set_readonly(_engine, False)  # the dataclass is frozen; its config node takes overrides
ConfigStore.instance().store(group="engine", name="defaults", node=_engine)
