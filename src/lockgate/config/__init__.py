"""`lockgate.yaml`: the declared backends, routes and releases, validated at start."""

from lockgate.config.loader import ConfigError, load_config, load_default_config
from lockgate.config.schema import (
    BackendConfig,
    HttpBackendConfig,
    LlamaCppBackendConfig,
    LockgateConfig,
    ReleaseSpec,
    RouteConfig,
)

__all__ = [
    "BackendConfig",
    "ConfigError",
    "HttpBackendConfig",
    "LlamaCppBackendConfig",
    "LockgateConfig",
    "ReleaseSpec",
    "RouteConfig",
    "load_config",
    "load_default_config",
]
