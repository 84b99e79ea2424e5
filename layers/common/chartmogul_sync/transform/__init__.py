"""Stripe → ChartMogul mapping: a pure function from a customer snapshot and a mapping config to a bundle."""

from .config import MappingConfig, MappingConfigError, load_mapping_config, parse_mapping_config
from .errors import CustomerExcluded, MappingError
from .mapping import MAPPING_VERSION, map_snapshot

__all__ = [
    "MAPPING_VERSION",
    "CustomerExcluded",
    "MappingConfig",
    "MappingConfigError",
    "MappingError",
    "load_mapping_config",
    "map_snapshot",
    "parse_mapping_config",
]
