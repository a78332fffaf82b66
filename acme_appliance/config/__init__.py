"""
The appliance's configuration: a TOML file read into frozen values.

L{load_config} checks everything it can without starting anything, so that
a bad file stops start-up with one L{ConfigError} line naming the file, the
key and the problem.  Every path in a L{Config} is absolute; a relative path
in the file is relative to the file's directory.
"""

from __future__ import annotations

from ._load import load_config
from ._model import (
    AcmeServerConfig,
    AdminConfig,
    CAConfig,
    CAKind,
    ClusterConfig,
    Config,
    ConfigError,
    IssuanceConfig,
    ListenersConfig,
    NotifyConfig,
    StorageConfig,
    ValidationConfig,
    WebhookConfig,
    state_path,
)

__all__ = [
    "AcmeServerConfig",
    "AdminConfig",
    "CAConfig",
    "CAKind",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "IssuanceConfig",
    "ListenersConfig",
    "NotifyConfig",
    "StorageConfig",
    "ValidationConfig",
    "WebhookConfig",
    "load_config",
    "state_path",
]
