"""The registry's configuration: its own application.yaml in the original (Serena).

    server:   addr 127.0.0.1 | port 8031
    registry: secretKey test | gossipPort 8041 | gossipKey, gossipVerifyIncoming/Outgoing,
              gossipMaxPushBytes, gossipMaxPushNodes, gossipMaxNodes (as the broker's
              cluster section)

Same layering as the broker: defaults < yaml < KAPOKMQ_* environment < CLI flags
(``KAPOKMQ_REGISTRY_SECRETKEY``, ``KAPOKMQ_SERVER_PORT``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kapokmq.config import DEFAULT_FILES, ServerSection, check_origins, overlay


@dataclass
class RegistryServerSection(ServerSection):
    port: int = field(default=8031, metadata={"min": 0, "max": 65535})


@dataclass
class RegistrySection:
    secretKey: str = "test"
    gossipPort: int = field(default=8041, metadata={"min": 0, "max": 65535})
    gossipKey: str = ""
    gossipVerifyIncoming: int = field(default=1, metadata={"choices": (0, 1)})
    gossipVerifyOutgoing: int = field(default=1, metadata={"choices": (0, 1)})
    gossipMaxPushBytes: int = field(default=20 << 20, metadata={"min": 1024})
    gossipMaxPushNodes: int = field(default=1024, metadata={"min": 1})
    gossipMaxNodes: int = field(default=512, metadata={"min": 2})


@dataclass
class RegistryConfig:
    server: RegistryServerSection = field(default_factory=RegistryServerSection)
    registry: RegistrySection = field(default_factory=RegistrySection)


def _has_registry_section(path: Path) -> bool:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(document, Mapping) and "registry" in document


def load_registry_config(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> RegistryConfig:
    """Build the registry's configuration.

    With no ``path``, ``./application.yaml`` (or ``config/application.yaml``) is read only
    if it has a ``registry:`` section, so a broker's file in the same directory is not
    mistaken for the registry's (its ``server.port`` would collide with the broker).
    """
    config = RegistryConfig()
    if path is None:
        path = next((p for p in DEFAULT_FILES if p.is_file() and _has_registry_section(p)), None)
    overlay(config, path, environ, overrides)
    check_origins(config.server.allowedOrigins)
    return config
