"""
Reading the TOML file into a L{Config}.
"""

from __future__ import annotations

import os
import tomllib
from typing import Any

from . import _authorities, _limits, _sections
from ._model import AcmeServerConfig, Config, ConfigError, StorageConfig, ValidationConfig
from ._sections import SECTIONS
from ._table import Problem, Table, kind_of, unknown

_ARRAYS: dict[str, tuple[str, ...]] = {"ca": _authorities.CA_KEYS, "policy": _authorities.POLICY_KEYS}
#: Tables whose keys are names the operator chooses.
_FREE_TABLES = ("profiles",)


def load_config(path: str) -> Config:
    """
    Read and check the TOML configuration file at C{path}.

    @raise ConfigError: The file cannot be read, is not TOML, or a key is
        missing, unknown or wrong.
    """
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(path, None, f"cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(path, None, f"not UTF-8 text (byte {e.start}): TOML files must be UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, None, f"not valid TOML: {e}") from None
    try:
        return _config(os.path.abspath(path), data)
    except Problem as p:
        raise ConfigError(path, p.key, p.problem) from None


def _config(path: str, data: dict[str, Any]) -> Config:
    base = os.path.dirname(path)

    def resolve(relative: str) -> str:
        return os.path.normpath(os.path.join(base, relative))

    for name in data:
        if name not in SECTIONS and name not in _ARRAYS and name not in _FREE_TABLES:
            unknown(name, name, [*SECTIONS, *_ARRAYS, *_FREE_TABLES])
    acme = _sections.acme(_section(data, "acme", required=True), resolve)
    admin = _sections.admin(_section(data, "admin", required=True), resolve) if "admin" in data else None
    storage = _sections.storage(_section(data, "storage", required=True), resolve)
    validation = _sections.validation(_section(data, "validation", required=False), resolve)
    notify = _sections.notify(_section(data, "notify", required=False), resolve)
    issuance = _sections.issuance(_section(data, "issuance", required=False), resolve)
    _check_workers(acme, storage, validation)
    limits = _limits.limits(_section(data, "limits", required=False))
    retention = _limits.retention(_section(data, "retention", required=False))
    listeners = _sections.listeners(_section(data, "listeners", required=False), resolve)
    cluster = _sections.cluster(_section(data, "cluster", required=False))
    cas = _authorities.cas(_array(data, "ca"), resolve)
    descriptions = _authorities.profile_descriptions(data.get("profiles"))
    policies = _authorities.policies(_array(data, "policy"), cas, validation, descriptions)
    return Config(
        path=path,
        acme=acme,
        admin=admin,
        storage=storage,
        validation=validation,
        notify=notify,
        issuance=issuance,
        cas=cas,
        policies=policies,
        limits=limits,
        retention=retention,
        listeners=listeners,
        cluster=cluster,
    )


#: The listener kinds worker processes can share.
_SHARED_KINDS = ("tcp", "tcp6", "ssl")


def _check_workers(acme: AcmeServerConfig, storage: StorageConfig, validation: ValidationConfig) -> None:
    """
    Worker processes share the store and the TCP listeners.
    """
    if acme.workers == 1:
        return
    if storage.url == "memory:":
        raise Problem("acme.workers", "needs a store the processes share (sqlite: or redis), not memory:")
    for key, description in (
        ("acme.listen", acme.listen),
        ("validation.fileproxy_listen", validation.fileproxy_listen),
    ):
        if description is not None and description.partition(":")[0].lower() not in _SHARED_KINDS:
            raise Problem(
                "acme.workers", f"worker processes share tcp:, tcp6: and ssl: listeners only, not {key} {description!r}"
            )


def _section(data: dict[str, Any], name: str, *, required: bool) -> Table:
    if name not in data:
        if required:
            raise Problem(name, f"missing required section [{name}]")
        return Table({}, name, SECTIONS[name])
    value = data[name]
    if not isinstance(value, dict):
        raise Problem(name, f"expected a table [{name}], got {kind_of(value)}")
    return Table(value, name, SECTIONS[name])


def _array(data: dict[str, Any], name: str) -> list[dict[str, Any]]:
    value = data.get(name)
    if value is None:
        raise Problem(name, f"at least one [[{name}]] table is required")
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise Problem(name, f"expected an array of tables [[{name}]], got {kind_of(value)}")
    if not value:
        raise Problem(name, f"at least one [[{name}]] table is required")
    return value
