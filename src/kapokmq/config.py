"""Configuration: embedded defaults < application.yaml < KAPOKMQ_* environment < CLI flags.

Field names are the original's yaml keys verbatim (camelCase), so an original
``application.yaml`` reads unchanged and ``/Console/GetConfig`` reports the same names.
Every value is validated once at start-up; a bad one raises ``ConfigError`` naming the key
and what is allowed. Every value the original starts with starts this broker too: where
ours would read it differently (a zero interval, a zero-size backlog) ``_settle_original``
picks the nearest sane value and logs a warning naming the key (docs/protocol.md,
"Values of the original's application.yaml").
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

ENV_PREFIX = "KAPOKMQ_"


class PushType(IntEnum):
    """mq.pushType (and per topic, mq.topics.<name>.pushType)."""

    POINT_TO_POINT = 1
    PUBLISH_SUBSCRIBE = 2


class Persistence(IntEnum):
    """mq.isPersistent (docs/durability.md)."""

    MEMORY = 0
    SNAPSHOTS = 1
    WAL = 2  # snapshots + write-ahead log


class ConfigError(ValueError):
    """A configuration value that the broker refuses to start with."""


def _choices(*values: object) -> dict[str, Any]:
    return {"choices": values}


def _at_least(minimum: int) -> dict[str, Any]:
    return {"min": minimum}


@dataclass
class ServerSection:
    addr: str = "127.0.0.1"  # B8: loopback unless told otherwise
    port: int = field(default=8011, metadata={"min": 0, "max": 65535})
    tlsCert: str = ""  # PEM certificate chain; with tlsKey: serve https/wss
    tlsKey: str = ""
    # who serves the producer/consumer WebSockets on the main port: picows (faster) or
    # aiohttp (the engine of everything else on the port); same protocol either way
    wsEngine: str = field(default="picows", metadata=_choices("picows", "aiohttp"))
    # /metrics: per-topic series for this many busiest topics (the rest as topic="_other"),
    # and whether it is served without the key
    metricsTopics: int = field(default=1000, metadata=_at_least(0))
    metricsPublic: int = field(default=0, metadata=_choices(0, 1))
    # web origins (scheme://host[:port]) whose pages may use the API and WebSockets; "*" = any
    # (docs/protocol.md "Origins")
    allowedOrigins: list[str] = field(default_factory=list)


@dataclass
class MqSection:
    secretKey: str = "test"
    consoleKey: str = ""  # if set, the Console API wants this key instead of secretKey
    pushType: int = field(default=1, metadata=_choices(1, 2))
    # the seven below take any integer, as the original does; _settle_original reads the
    # values it would misread (0 and below) the way docs/protocol.md lists
    messageChanBuffer: int = field(default=10_000_000, metadata=_at_least(0))
    pushMessagesSpeed: int = 1  # <= 0: no pause between batches (the original's meaning)
    pushCount: int = 1000  # <= 0: no batch limit (the original's meaning)
    pushThrottle: int = field(default=0, metadata=_choices(0, 1))
    pushRetryTime: int = 300
    persistentFile: str = "MQDATA"
    isPersistent: int = field(default=0, metadata=_choices(0, 1, 2))
    recoveryStrategy: int = field(default=1, metadata=_choices(0, 1))
    persistentTime: int = 5
    isCleanConsumed: int = field(default=0, metadata=_choices(0, 1))
    isRePush: int = field(default=1, metadata=_choices(0, 1))
    isClean: int = field(default=1, metadata=_choices(0, 1))
    checkSpeed: int = 5
    cleanTime: int = 172_800
    maxInFlight: int = field(default=1000, metadata=_at_least(1))
    # bytes the broker holds for one consumer connection: one push batch, and a pub/sub
    # subscriber's queued copies (over it: closed 1008 "slow consumer")
    maxPendingBytes: int = field(default=8 << 20, metadata=_at_least(65536))
    maxDeliveries: int = field(default=0, metadata=_at_least(0))
    maxMessageBytes: int = field(default=1 << 20, metadata=_at_least(64))
    # seconds a new WebSocket connection has to send the right secret key (then 1008)
    keyTimeout: int = field(default=30, metadata=_at_least(1))
    fsync: str = field(default="everysec", metadata=_choices("always", "everysec", "no"))
    dataDir: str = "data"
    walCompactBytes: int = field(default=64 << 20, metadata=_at_least(4096))
    recoverSkipCorrupt: int = field(default=0, metadata=_choices(0, 1))
    # producer dedup (docs/protocol.md, "Dedup"): seconds a MessageId is remembered per
    # topic (0 = off), and how many ids at most (the oldest are forgotten first)
    dedupWindow: int = field(default=86_400, metadata=_at_least(0))
    dedupMaxIds: int = field(default=1_000_000, metadata=_at_least(1))
    # message trace (docs/protocol.md, "Message trace"): 0 off, 1 every message, or the
    # share of messages traced (0 < x < 1); at most traceMaxEvents events are kept in all
    # (a whole number is kept as an int: /Console/GetConfig reports 0 and 1 as the
    # original's integer keys, never 0.0)
    trace: float = field(default=0, metadata={"min": 0, "max": 1})
    traceMaxEvents: int = field(default=1_000_000, metadata=_at_least(16))
    topics: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class ClusterSection:
    isCluster: int = field(default=0, metadata=_choices(0, 1))
    gossipPort: int = field(default=8021, metadata={"min": 0, "max": 65535})
    registryAddr: str = "127.0.0.1"
    registryGossipPort: str = field(default="8041", metadata={"port": True})
    # gossip encryption and bounds (docs/cluster.md, Security): base64 keys, the first
    # primary; an empty key means plaintext gossip
    gossipKey: str = ""
    gossipVerifyIncoming: int = field(default=1, metadata=_choices(0, 1))
    gossipVerifyOutgoing: int = field(default=1, metadata=_choices(0, 1))
    gossipMaxPushBytes: int = field(default=20 << 20, metadata=_at_least(1024))
    gossipMaxPushNodes: int = field(default=1024, metadata=_at_least(1))
    gossipMaxNodes: int = field(default=512, metadata=_at_least(2))


@dataclass
class SyncSection:
    isSync: int = field(default=0, metadata=_choices(0, 1))
    isSlave: int = field(default=0, metadata=_choices(0, 1))
    masterProtocol: str = field(default="ws", metadata=_choices("ws", "wss"))
    masterAddr: str = "127.0.0.1"
    masterPort: str = field(default="8011", metadata={"port": True})
    # 1 = synchronous replication: a master answers ok only once its slave confirmed the
    # message, and writes need both brokers (docs/cluster.md, sync.ack)
    ack: int = field(default=0, metadata=_choices(0, 1))


@dataclass
class Config:
    server: ServerSection = field(default_factory=ServerSection)
    mq: MqSection = field(default_factory=MqSection)
    cluster: ClusterSection = field(default_factory=ClusterSection)
    sync: SyncSection = field(default_factory=SyncSection)
    # where the values came from, for the start-up banner (not a yaml section)
    source: str = field(default="embedded defaults", compare=False, metadata={"section": False})

    def topic_push_type(self, topic: str) -> PushType:
        """pushType for one topic: the per-topic override if any, else the global one."""
        override = self.mq.topics.get(topic)
        if override is not None and "pushType" in override:
            return PushType(int(override["pushType"]))
        return PushType(self.mq.pushType)

    def topic_ttl(self, topic: str) -> int:
        """The default TTL (seconds, 0 = none) of one topic's messages (mq.topics)."""
        override = self.mq.topics.get(topic)
        return int(override.get("ttl", 0)) if override is not None else 0

    def topic_dedup_window(self, topic: str) -> int:
        """Seconds a MessageId is remembered on one topic (0 = no dedup)."""
        override = self.mq.topics.get(topic)
        if override is not None and "dedupWindow" in override:
            return int(override["dedupWindow"])
        return self.mq.dedupWindow

    def push_throttle(self) -> tuple[int, float] | None:
        """(pushCount, pushMessagesSpeed) when the optional rate limit is on, else None.

        A pushCount or pushMessagesSpeed of 0 or below means no limit, as in the original
        (its push loop never pauses then)."""
        mq = self.mq
        if not mq.pushThrottle or mq.pushCount <= 0 or mq.pushMessagesSpeed <= 0:
            return None
        return mq.pushCount, float(mq.pushMessagesSpeed)

    def console_view(self) -> dict[str, Any]:
        """The GetConfig payload: every key but the secrets and the listen address (the
        original reports mq, cluster and sync; our server keys, tlsCert..., are added).

        Keys are sorted because the original returns a Go map, which encoding/json sorts.
        """
        view: dict[str, Any] = {}
        for section in (self.server, self.mq, self.cluster, self.sync):
            for f in dataclasses.fields(section):
                if f.name not in SECRETS and f.name not in LISTEN_ADDRESS:
                    view[f.name] = getattr(section, f.name)
        return dict(sorted(view.items()))


SECTIONS = ("server", "mq", "cluster", "sync")
SECRETS = frozenset(("secretKey", "consoleKey", "gossipKey"))
LISTEN_ADDRESS = frozenset(("addr", "port"))  # server's; not in the original's GetConfig


def _sections(config: Any) -> tuple[str, ...]:
    """The section names of a config dataclass (the broker's ``Config`` or another, e.g.
    the registry's), so the loaders below serve any of them."""
    return tuple(f.name for f in dataclasses.fields(config) if f.metadata.get("section", True))


def _coerce(section: str, f: dataclasses.Field[Any], raw: object) -> object:
    """Convert one raw value (yaml scalar or env string) to the field's type and check it."""
    key = f"{section}.{f.name}"
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    value: object
    if raw is None:  # `key:` with no value: the type's zero value, as the original's viper
        raw = (
            ""
            if kind == "str"
            else 0
            if kind in ("int", "float")
            else []
            if kind == "list[str]"
            else {}
        )
    if kind == "int":
        value = _integer(key, raw)
    elif kind == "float":
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise ConfigError(f"{key} must be a number, got {raw!r}")
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{key} must be a number, got {raw!r}") from None
        if value != value:  # NaN
            raise ConfigError(f"{key} must be a number, got {raw!r}")
        if value.is_integer() and abs(value) < 1 << 63:
            value = int(value)
    elif kind == "str":
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            raise ConfigError(f"{key} must be a string, got {raw!r}")
        value = str(raw)
        if f.metadata.get("port") and not (
            value.isascii() and value.isdigit() and int(value) < 65536
        ):
            # a port kept as text, as the original's GetConfig reports it
            raise ConfigError(f"{key} must be a port number (0-65535), got {raw!r}")
    elif kind == "list[str]":  # a yaml list, or comma-separated in the environment or a flag
        items = raw
        if isinstance(raw, str):  # "[a, b]" as in application.yaml, or "a,b"
            flow = raw.strip()
            if flow.startswith("[") and flow.endswith("]"):
                with contextlib.suppress(yaml.YAMLError):
                    items = yaml.safe_load(flow)
            if isinstance(items, str):
                items = items.split(",")
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ConfigError(f"{key} must be a list of strings, got {raw!r}")
        value = [i.strip() for i in items if i.strip()]
    else:  # the topics mapping
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{key} must be a mapping of topic name to settings")
        value = _check_topics(key, raw)
    choices = f.metadata.get("choices")
    if choices is not None and value not in choices:
        allowed = ", ".join(str(c) for c in choices)
        raise ConfigError(f"{key} must be one of {allowed}; got {raw!r}")
    minimum = f.metadata.get("min")
    if minimum is not None and isinstance(value, int | float) and value < minimum:
        raise ConfigError(f"{key} must be >= {minimum}; got {raw!r}")
    maximum = f.metadata.get("max")
    if maximum is not None and isinstance(value, int | float) and value > maximum:
        raise ConfigError(f"{key} must be <= {maximum}; got {raw!r}")
    return value


# The original's integer keys, read by viper's GetInt (cast.ToInt): a yaml boolean is 1 / 0,
# a number with a fraction is cut to its whole part, digits in quotes are their number. This
# broker's own integer keys take whole numbers only (`maxInFlight: 1.5` is refused).
GO_INT_KEYS = frozenset(
    (
        "mq.pushType",
        "mq.messageChanBuffer",
        "mq.pushMessagesSpeed",
        "mq.pushCount",
        "mq.pushRetryTime",
        "mq.isPersistent",
        "mq.recoveryStrategy",
        "mq.persistentTime",
        "mq.isCleanConsumed",
        "mq.isRePush",
        "mq.isClean",
        "mq.checkSpeed",
        "mq.cleanTime",
        "cluster.isCluster",
        "cluster.gossipPort",
        "sync.isSync",
        "sync.isSlave",
        "registry.gossipPort",
    )
)
_GO_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _go_int(text: str) -> int | None:
    """Go's ``strconv.ParseInt(text, 0, 64)`` (what cast.ToInt does with a string): an
    optional sign, then decimal, ``0x``/``0o``/``0b``, or a leading 0 for octal; else None."""
    body = text[1:] if text[:1] in "+-" else text
    if not body.isascii() or not body.replace("_", "").isalnum() or body.startswith("_"):
        return None
    lowered = body.lower()
    base = 10
    if lowered[:2] in ("0x", "0o", "0b"):
        base, body = {"0x": 16, "0o": 8, "0b": 2}[lowered[:2]], body[2:]
    elif len(body) > 1 and body.startswith("0"):
        base, body = 8, body[1:]
    try:
        number = int(body, base)
    except ValueError:
        return None
    return -number if text.startswith("-") else number


def _integer(key: str, raw: object) -> int:
    """One integer key's value: see GO_INT_KEYS for how the original's keys are read."""
    original = key in GO_INT_KEYS
    if isinstance(raw, bool):
        if original:  # `isClean: true`: viper's GetInt reads a yaml boolean as 1 / 0
            return int(raw)
        raise ConfigError(f"{key} must be an integer, got {raw!r}")
    if isinstance(raw, int):
        return raw
    number: float | None = None
    if isinstance(raw, str):
        whole = _go_int(raw)
        if whole is not None:
            return whole
        if _GO_DECIMAL.fullmatch(raw):
            number = float(raw)
    elif isinstance(raw, float):
        number = raw
    if number is None or number != number or abs(number) >= 2.0**63:
        raise ConfigError(f"{key} must be an integer, got {raw!r}")
    if number.is_integer():
        return int(number)
    if not original:
        raise ConfigError(f"{key} must be a whole number, got {raw!r}")
    whole = int(number)  # toward zero, as Go's int(float64)
    log.warning(
        "%s is %r: the original reads a whole number (viper's GetInt drops the fraction); using %d",
        key,
        raw,
        whole,
    )
    return whole


# what mq.topics may set per topic: pushType; ttl, the default TTL in seconds of its
# messages (0 = none); dedupWindow, overriding mq.dedupWindow
TOPIC_SETTINGS = ("pushType", "ttl", "dedupWindow")


def _check_topics(key: str, raw: Mapping[Any, Any]) -> dict[str, dict[str, Any]]:
    topics: dict[str, dict[str, Any]] = {}
    for name, settings in raw.items():
        if not isinstance(settings, Mapping):
            raise ConfigError(f"{key}.{name} must be a mapping such as {{pushType: 2}}")
        # setting names match case-insensitively, as every other key (topic names do not)
        canonical = {s.lower(): s for s in TOPIC_SETTINGS}
        settings = {canonical.get(str(k).lower(), k): v for k, v in settings.items()}
        unknown = set(settings) - set(TOPIC_SETTINGS)
        if unknown:
            raise ConfigError(
                f"{key}.{name}: unknown setting(s) {sorted(unknown)}; "
                f"allowed: {', '.join(TOPIC_SETTINGS)}"
            )
        if "pushType" in settings and settings["pushType"] not in (1, 2, "1", "2"):
            raise ConfigError(f"{key}.{name}.pushType must be one of 1, 2")
        checked: dict[str, Any] = {}
        for setting, value in settings.items():
            try:  # an int, or its text as mq's own integer keys take it; never 1.5 -> 1
                number = int(value) if isinstance(value, int | str) else -1
            except ValueError:
                number = -1
            if isinstance(value, bool) or number < 0:
                raise ConfigError(f"{key}.{name}.{setting} must be an integer >= 0, got {value!r}")
            checked[setting] = number
        topics[str(name)] = checked
    return topics


COMMAND_LINE = "command line"


def _apply(config: Any, section: str, name: str, raw: object, origin: str) -> None:
    target = getattr(config, section)
    fields = {f.name: f for f in dataclasses.fields(target)}
    f = fields.get(name)
    if f is None:
        lowered = {n.lower(): n for n in fields}
        original_only = {k.lower(): (k, v) for k, v in ORIGINAL_ONLY_KEYS.items()}
        if name.lower() in lowered:
            f = fields[lowered[name.lower()]]
        elif f"{section}.{name}".lower() in original_only:
            key, reason = original_only[f"{section}.{name}".lower()]
            log.info("%s: %s has no setting here: %s", origin, key, reason)
            return
        else:
            close = difflib.get_close_matches(name.lower(), list(lowered), n=1)
            hint = f" (did you mean {section}.{lowered[close[0]]}?)" if close else ""
            if origin == COMMAND_LINE:  # typed just now: say so rather than start without it
                raise ConfigError(f"unknown setting {section}.{name}{hint}")
            log.warning("%s: ignoring unknown key %s.%s%s", origin, section, name, hint)
            return
    setattr(target, f.name, _coerce(section, f, raw))


# sections of the original's files that one of our two configs (broker, registry) reads:
# the other one's sections are skipped quietly, anything else is warned about
KNOWN_SECTIONS = ("server", "mq", "cluster", "sync", "registry")


def _yaml_reason(exc: yaml.YAMLError) -> str:
    """A YAML syntax error as ``line L, column C: problem`` (PyYAML's own text names
    "<unicode string>" instead of the file and spans several lines)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        what = ": ".join(part for part in (exc.context, exc.problem) if part)
        return f"line {mark.line + 1}, column {mark.column + 1}: {what}"
    return " ".join(str(exc).split())


def load_yaml(config: Any, path: Path) -> None:
    """Overlay an application.yaml (original format; unknown keys are warned about).
    Section and key names match case-insensitively, as the original's viper reads them."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:  # e.g. saved as GBK: the original wants UTF-8 too
        raise ConfigError(
            f"config file {path} is not UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start}); save it as UTF-8"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {_yaml_reason(exc)}") from None
    if document is None:
        return
    if not isinstance(document, Mapping):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    ours = {name.lower(): name for name in _sections(config)}
    for raw_section, values in document.items():
        section = ours.get(str(raw_section).lower())
        if section is None:
            if str(raw_section).lower() not in KNOWN_SECTIONS:
                log.warning(
                    "%s: ignoring unknown section %s (sections: %s)",
                    path,
                    raw_section,
                    ", ".join(_sections(config)),
                )
            continue  # e.g. Serena's `registry:` section in a shared file
        if values is None:
            continue
        if not isinstance(values, Mapping):
            raise ConfigError(f"{path}: section {section} must be a mapping")
        for name, raw in values.items():
            _apply(config, section, str(name), raw, str(path))


def load_env(config: Any, environ: Mapping[str, str]) -> None:
    """Overlay KAPOKMQ_<SECTION>_<KEY> variables (key matched case-insensitively)."""
    for var, raw in environ.items():
        if not var.startswith(ENV_PREFIX):
            continue
        rest = var[len(ENV_PREFIX) :]
        section, _, name = rest.partition("_")
        section = section.lower()
        if section not in _sections(config) or not name:
            continue
        _apply(config, section, name.replace("_", ""), raw, f"environment {var}")


def apply_overrides(config: Any, overrides: Mapping[str, object]) -> None:
    """Overlay dotted ``section.key`` values (from CLI flags)."""
    for dotted, raw in overrides.items():
        section, _, name = dotted.partition(".")
        if section not in _sections(config) or not name:
            raise ConfigError(f"unknown setting {dotted!r}; use section.key, e.g. mq.pushType")
        if section == "mq" and name == "topics":
            raise ConfigError("mq.topics can only be set in the yaml file")
        _apply(config, section, name, raw, COMMAND_LINE)


DEFAULT_FILES = (Path("application.yaml"), Path("config/application.yaml"))


def overlay(
    config: Any,
    path: Path | None,
    environ: Mapping[str, str] | None,
    overrides: Mapping[str, object] | None,
) -> None:
    """Apply yaml file, then KAPOKMQ_* environment, then dotted overrides, in that order."""
    if path is not None:
        if not path.is_file():
            what = "is a directory" if path.is_dir() else "does not exist"
            raise ConfigError(f"config file {path} {what}")
        load_yaml(config, path)
    load_env(config, os.environ if environ is None else environ)
    if overrides:
        apply_overrides(config, overrides)


# Keys of the original's application.yaml that have no setting here, with the reason.
ORIGINAL_ONLY_KEYS = {
    "mq.pushRetryCount": "a failed push is offered at once to another consumer of the topic",
}

# Whole-second intervals the original sleeps for; at 0 or below it loops without pausing.
_INTERVALS = {
    "pushRetryTime": "the original re-pushes an unacknowledged message at every check once "
    "a second has passed",
    "persistentTime": "the original writes snapshots back to back",
    "checkSpeed": "the original checks messages in a busy loop",
}


def _settle_original(mq: MqSection) -> None:
    """Read the values the original starts with but this broker would misread
    (docs/protocol.md, "Values of the original's application.yaml"); warn for each."""
    for key, original in _INTERVALS.items():
        value = getattr(mq, key)
        if value < 1:
            log.warning("mq.%s is %d: %s; using 1 s", key, value, original)
            setattr(mq, key, 1)
    if mq.messageChanBuffer == 0:
        default = MqSection.messageChanBuffer
        log.warning(
            "mq.messageChanBuffer is 0: the original's unbuffered channel still takes every "
            "message while no consumer is connected; using the default bound %d",
            default,
        )
        mq.messageChanBuffer = default
    if mq.isClean and mq.cleanTime < 1:
        log.warning(
            "mq.cleanTime is %d with mq.isClean 1: every message is deleted within "
            "mq.checkSpeed s of its creation, delivered or not (as in the original); "
            "set mq.isClean 0 to keep messages",
            mq.cleanTime,
        )
    for key in ("pushMessagesSpeed", "pushCount"):
        value = getattr(mq, key)
        if value <= 0:  # the original's meaning, kept; said because its limit is gone
            log.warning(
                "mq.%s is %d: the original then never pauses between push batches; pushes "
                "are not rate-limited%s",
                key,
                value,
                " (mq.pushThrottle 1 has no effect)" if mq.pushThrottle else "",
            )
    if not mq.secretKey:
        log.warning(
            "mq.secretKey is empty: any client that sends an empty key is let in "
            "(as in the original); set a key"
        )


_WILDCARDS = ("", "0.0.0.0", "::")
_LOOPBACK_NAMES = ("localhost", "::1")


def _master_is_self(config: Config) -> bool:
    """Whether sync.masterAddr:masterPort names this broker's own listener (the original's
    latest application.yaml ships isSync 1, isSlave 1 and masterPort 8011 = server.port)."""
    sync, server = config.sync, config.server
    if sync.masterPort != str(server.port):
        return False
    master, addr = sync.masterAddr.strip().lower(), server.addr.strip().lower()
    if master == addr:
        return True
    local = master in _LOOPBACK_NAMES or master.startswith("127.")
    return local and (addr in _WILDCARDS or (master == "localhost" and addr == "127.0.0.1"))


def _settle_sync(config: Config) -> None:
    """A slave whose master is itself would follow nobody and warn forever: it is a
    master instead (docs/protocol.md, "Values of the original's application.yaml")."""
    sync = config.sync
    if sync.isSync and sync.isSlave and _master_is_self(config):
        log.warning(
            "sync.isSlave is 1 but sync.masterAddr:masterPort (%s:%s) is this broker itself: "
            "there is no master to follow; serving as a master (set sync.masterAddr to "
            "another broker to follow it)",
            sync.masterAddr,
            sync.masterPort,
        )
        sync.isSlave = 0


def describe_source(
    path: Path | None, environ: Mapping[str, str], overrides: Mapping[str, object] | None
) -> str:
    """``/abs/application.yaml`` or ``embedded defaults``, plus what overrode it."""
    source = str(path.resolve()) if path is not None else "embedded defaults"
    extra = []
    if any(var.startswith(ENV_PREFIX) for var in environ):
        extra.append(f"{ENV_PREFIX}* environment")
    if overrides:
        extra.append("command-line flags")
    return source + "".join(f" + {e}" for e in extra)


# what a browser sends as Origin: scheme://host[:port], nothing after it (a trailing "/"
# is forgiven: docs/protocol.md "Origins"); "null" for a page opened from a file
_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s*]+/?", re.IGNORECASE)


def check_origins(origins: list[str]) -> None:
    """An entry of server.allowedOrigins that no browser's Origin can equal would silently
    allow nothing (a missing scheme, a path, a wildcard host): refuse it, saying why."""
    for origin in origins:
        if origin not in ("*", "null") and not _ORIGIN.fullmatch(origin):
            raise ConfigError(
                "server.allowedOrigins entries are scheme://host[:port] as a browser sends "
                "them (e.g. https://app.example.com, http://localhost:3000), null (a page "
                f"opened from a file) or * (every origin); got {origin!r}"
            )


def load_config(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Config:
    """Build the effective configuration; ``./application.yaml`` is read if no path is given."""
    config = Config()
    if path is None:
        path = next((p for p in DEFAULT_FILES if p.is_file()), None)
    environ = os.environ if environ is None else environ
    overlay(config, path, environ, overrides)
    config.source = describe_source(path, environ, overrides)
    _settle_original(config.mq)
    _settle_sync(config)
    check_origins(config.server.allowedOrigins)
    if bool(config.server.tlsCert) != bool(config.server.tlsKey):
        raise ConfigError("server.tlsCert and server.tlsKey must be set together")
    return config
