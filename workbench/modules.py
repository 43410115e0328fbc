"""The module registry: one listing of every installed plug-in, whatever registry holds it.

Nothing is registered here. Each kind is read from the registry that owns it, so the listing
can never disagree with what the workbench actually uses:

    connector        connectors.registry.connectors          entry points workbench.connectors
    rule_action      the rule model's action types (pause, resume, set_budget, change_budget,
                     notify, webhook) and what each needs: a platform writer or a channel
    platform_writer  connectors.writers.platform_writers     entry points workbench.platform_writers
    channel          workbench.notify.registry.channels      entry points workbench.notification_channels
    metric_pack      workbench.formulas.packs.metric_packs   entry points workbench.metric_packs
    backend          optional stores and services (PostgreSQL, Redis, S3, a ClickHouse server)

A plug-in's origin is ``builtin`` (this package), ``entry point <dist>`` (the registered object
is the one an installed distribution's entry point loads), or ``registered by <module>`` (code
called ``register`` at run time). Its version is that of the distribution it comes from. A
connector, channel or writer factory may declare the distributions it needs beyond the
workbench's own dependencies as ``requires: ClassVar[tuple[str, ...]] = ("some-dist",)``; those
not installed are ``missing`` and make the plug-in unavailable.

The registries are imported on first use, so that importing this module (and the CLI) stays quick.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution, entry_points, packages_distributions
from pathlib import Path
from typing import Any, get_args

import polars as pl

from workbench.errors import ConfigError, ValidationError

KINDS: tuple[str, ...] = ("connector", "rule_action", "platform_writer", "channel", "metric_pack", "backend")
"""Every kind of module, in listing order."""

GROUPS: dict[str, str] = {
    "connector": "workbench.connectors",
    "platform_writer": "workbench.platform_writers",
    "channel": "workbench.notification_channels",
    "metric_pack": "workbench.metric_packs",
}
"""The entry-point group third-party packages register each pluggable kind under."""

OWN_DISTRIBUTION = "workbench"
OWN_PACKAGES = ("workbench", "connectors")  # the top-level packages this distribution ships
WRITER_OPERATIONS = ("pause", "resume", "set_budget")  # what every PlatformWriter implements
_DIST_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


@dataclass(frozen=True)
class ModuleInfo:
    """One installed plug-in: where it comes from, what it can do, and whether it can run here."""

    kind: str
    name: str
    version: str
    origin: str  # "builtin", "entry point <dist>" or "registered by <module>"
    capabilities: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()  # distributions needed beyond the workbench's own dependencies
    missing: tuple[str, ...] = ()  # those of ``requires`` that are not installed
    available: bool = True
    description: str = ""


def check_kind(kind: str) -> str:
    """The canonical kind for ``kind`` (plurals and dashes accepted: ``rule-actions``), or a
    ValidationError naming the kinds."""
    canonical = kind.strip().lower().replace("-", "_")
    if canonical not in KINDS and canonical.endswith("s") and canonical[:-1] in KINDS:
        canonical = canonical[:-1]
    if canonical not in KINDS:
        raise ValidationError(f"unknown module kind '{kind}'; kinds: {', '.join(KINDS)}")
    return canonical


def list_modules(kind: str | None = None) -> list[ModuleInfo]:
    """Every installed module (or those of one ``kind``), by kind in ``KINDS`` order, then by name."""
    kinds = KINDS if kind is None else (check_kind(kind),)
    listers: dict[str, Callable[[], list[ModuleInfo]]] = {
        "connector": _connectors, "rule_action": _rule_actions, "platform_writer": _platform_writers,
        "channel": _channels, "metric_pack": _metric_packs, "backend": _backends,
    }
    out: list[ModuleInfo] = []
    for k in kinds:
        out.extend(sorted(listers[k](), key=lambda m: m.name))
    return out


_FRAME_SCHEMA: dict[str, Any] = {
    "kind": pl.String, "name": pl.String, "version": pl.String, "origin": pl.String,
    "available": pl.Boolean, "capabilities": pl.String, "requires": pl.String, "missing": pl.String,
    "description": pl.String,
}


def modules_frame(kind: str | None = None) -> pl.DataFrame:
    """``list_modules`` as a frame, one row per module; tuples joined with ", " (CSV-friendly)."""
    rows = [{"kind": m.kind, "name": m.name, "version": m.version, "origin": m.origin,
             "available": m.available, "capabilities": ", ".join(m.capabilities),
             "requires": ", ".join(m.requires), "missing": ", ".join(m.missing),
             "description": m.description} for m in list_modules(kind)]
    return pl.DataFrame(rows, schema=_FRAME_SCHEMA)


# -- where a plug-in comes from -------------------------------------------------------------

def own_version() -> str:
    """The installed workbench's version (the package's own when it runs from a source tree)."""
    try:
        return distribution(OWN_DISTRIBUTION).version
    except PackageNotFoundError:
        import workbench

        return workbench.__version__


def _origin(kind: str, name: str, obj: Any, builtin: bool) -> tuple[str, str]:
    """``(origin, version)`` of the object registered as ``name``.

    An entry point counts only when it loads to the very object registered: a later
    ``register`` call under the same name replaces the plug-in, and the listing must say so.
    """
    for ep in entry_points(group=GROUPS[kind], name=name):
        try:
            loaded = ep.load()
        except Exception:  # a broken plug-in is not the one registered: keep looking
            continue
        same = loaded is obj or (isinstance(obj, Path) and isinstance(loaded, str | Path) and Path(loaded) == obj)
        if same:
            dist = ep.dist
            if dist is None:
                return "entry point", "unknown"
            return f"entry point {dist.name}", dist.version
    if builtin:
        return "builtin", own_version()
    module = getattr(obj, "__module__", None) or "unknown code"
    return f"registered by {module}", _module_version(module)


def _is_own(obj: Any) -> bool:
    return (getattr(obj, "__module__", None) or "").split(".")[0] in OWN_PACKAGES


def _module_version(module: str) -> str:
    """The version of the distribution that ships ``module``'s top-level package, if any does."""
    dists = _packages_distributions().get(module.split(".")[0], [])
    for dist in dists:
        try:
            return distribution(dist).version
        except PackageNotFoundError:
            continue
    return "unknown"


@functools.lru_cache(maxsize=1)
def _packages_distributions() -> dict[str, list[str]]:
    # scans every installed distribution: done once per process, and only for run-time registrations
    return dict(packages_distributions())


def installed(dist: str) -> bool:
    """Whether a distribution named ``dist`` (a name, or a requirement like ``redis>=5``) is installed."""
    match = _DIST_NAME.match(dist)
    if match is None:
        return False
    try:
        distribution(match.group(1))
    except PackageNotFoundError:
        return False
    return True


def _requires(obj: Any) -> tuple[str, ...]:
    """The ``requires`` a plug-in declares (a lone string is one name, not its letters)."""
    value = getattr(obj, "requires", ())
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value) if isinstance(value, Iterable) else ()


def _summary(obj: Any) -> str:
    """The first paragraph of an object's own docstring (a class's is not inherited), on one line."""
    doc = obj.__doc__ if isinstance(obj, type) else inspect.getdoc(obj)
    if not doc:
        return ""
    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].replace("``", "").split())


def _info(kind: str, name: str, obj: Any, capabilities: Iterable[str], description: str) -> ModuleInfo:
    origin, version = _origin(kind, name, obj, _is_own(obj))
    requires = _requires(obj)
    missing = tuple(d for d in requires if not installed(d))
    return ModuleInfo(kind, name, version, origin, tuple(capabilities), requires, missing, not missing, description)


# -- the kinds ------------------------------------------------------------------------------

def _connectors() -> list[ModuleInfo]:
    from connectors import connectors

    out = []
    for name in connectors.names():
        cls = connectors.get(name)
        streams = ", ".join(s.name for s in getattr(cls, "streams", ()))
        description = " ".join(p for p in (_summary(cls), f"Streams: {streams}." if streams else "") if p)
        out.append(_info("connector", name, cls, sorted(getattr(cls, "capabilities", ())), description))
    return out


def _platform_writers() -> list[ModuleInfo]:
    from connectors import connectors
    from connectors.writers import connection_or_synthetic, platform_writers

    out = []
    for platform in platform_writers.platforms():
        factory = platform_writers.factory(platform)
        if factory is connection_or_synthetic:
            connector = connectors.get(platform) if platform in connectors.names() else None
            writes = connector is not None and "write" in getattr(connector, "capabilities", ())
            capabilities = (*WRITER_OPERATIONS, "synthetic", *(("connection",) if writes else ()))
            description = (f"Writes through the organisation's active {platform} connection, else to the "
                           "synthetic platform (which records what it was asked)." if writes else
                           f"Writes to the synthetic platform only: no installed {platform} connector can write.")
        else:
            capabilities, description = WRITER_OPERATIONS, _summary(factory)
        out.append(_info("platform_writer", platform, factory, capabilities, description))
    return out


def _channels() -> list[ModuleInfo]:
    from workbench.notify.registry import channels
    from workbench.rules.model import CHANNELS

    out = []
    for name in channels.names():
        cls = channels.get(name)
        capabilities = [*(["configurable"] if getattr(cls, "configurable", False) else []),
                        *(["rule_notify"] if name in CHANNELS else [])]
        if getattr(cls, "configurable", False):
            fields = [*getattr(cls, "setting_fields", ()), *getattr(cls, "secret_fields", ())]
            default = "Sends to configured channels" + (f" (each with {', '.join(fields)})." if fields else ".")
        else:
            default = f"Sends to {getattr(cls, 'target_hint', 'configured channel names')}."
        description = _summary(cls) or default
        out.append(_info("channel", name, cls, capabilities, description))
    return out


def _metric_packs() -> list[ModuleInfo]:
    from workbench.formulas import packs

    out = []
    for name in packs.metric_packs.names():
        path = packs.metric_packs.path(name)
        origin, version = _origin("metric_pack", name, path, path.is_relative_to(packs.RULES_DIR))
        if origin.startswith("registered by"):
            origin = "registered at run time"
        try:
            # the pack's own loader, so a pack that metric_packs.definitions() would refuse shows as unavailable
            metrics = packs.load_pack(path, name)
        except (OSError, ConfigError) as exc:
            out.append(ModuleInfo("metric_pack", name, version, origin, (), (), (), False,
                                  f"cannot be used: {exc}"))
            continue
        out.append(ModuleInfo("metric_pack", name, version, origin, tuple(sorted(metrics)), (), (), True,
                              f"{len(metrics)} metrics from {path}."))
    return out


_RULE_ACTION_TEXT = {
    "notify": "Queue a notification to the rule's channels (channel:target).",
    "webhook": "Post the rule's findings to a configured webhook channel.",
}


def _rule_actions() -> list[ModuleInfo]:
    from connectors.writers import platform_writers
    from workbench.notify.registry import channels
    from workbench.rules.actions import MODES, Spec
    from workbench.rules.model import CHANNELS, Action

    version = own_version()
    platforms = platform_writers.platforms()
    registered = set(channels.names())
    specs = {get_args(cls.model_fields["type"].annotation)[0]: cls for cls in get_args(Spec)}
    out = []
    for action in get_args(Action.model_fields["type"].annotation):
        if action in specs:
            needs = (f"Needs a platform writer; platforms with one: {', '.join(platforms)}." if platforms
                     else "Needs a platform writer and none is registered.")
            out.append(ModuleInfo("rule_action", action, version, "builtin", (*MODES, "undo"), (), (),
                                  bool(platforms), f"{_summary(specs[action])} {needs}"))
            continue
        if action == "notify":
            usable = tuple(c for c in CHANNELS if c in registered)
            needs = f"Needs a notification channel; usable: {', '.join(usable) or 'none registered'}."
        elif action == "webhook":
            usable = ("webhook",) if "webhook" in registered else ()
            needs = "Needs the webhook channel." + ("" if usable else " It is not registered.")
        else:  # a type the rule model gained after this listing was written: nothing known to check
            usable, needs = (), ""
        available = bool(usable) or action not in ("notify", "webhook")
        out.append(ModuleInfo("rule_action", action, version, "builtin", usable, (), (), available,
                              " ".join(p for p in (_RULE_ACTION_TEXT.get(action, ""), needs) if p)))
    return out


@dataclass(frozen=True)
class _Backend:
    name: str  # also the name of the workbench extra that installs its dependencies
    requires: tuple[str, ...]
    capabilities: tuple[str, ...]
    description: str
    unsupported: Callable[[], str | None] = lambda: None  # why it cannot run even with its dependencies


def _s3_unsupported() -> str | None:
    # the lake writes s3:// through pyiceberg's PyArrow FileIO: pyarrow must be built with S3
    if importlib.util.find_spec("pyarrow._s3fs") is None:
        return "this pyarrow build has no S3 filesystem; install a pyarrow wheel with S3 support"
    return None


def _clickhouse_server_unsupported() -> str | None:
    from workbench.settings import Settings

    engines = get_args(Settings.model_fields["engine"].annotation)
    if set(engines) <= {"chdb"}:
        return "the engine setting accepts only chdb in this release"
    return None


BACKENDS: tuple[_Backend, ...] = (
    _Backend("postgres", ("psycopg",), ("oltp", "catalog"),
             "PostgreSQL for the OLTP store and the Iceberg catalog (oltp_url, catalog_uri "
             "postgresql+psycopg://...); SQLite files otherwise."),
    _Backend("redis", ("redis",), ("rate_limits", "locks"),
             "Redis for rate limits and locks shared across processes (redis_url); in-process otherwise."),
    _Backend("s3", (), ("warehouse",),
             "An s3:// Iceberg warehouse (warehouse, s3_endpoint, s3_*); a local folder otherwise.",
             _s3_unsupported),
    _Backend("clickhouse-server", ("clickhouse-connect",), ("query_engine",),
             "A ClickHouse server as the query engine, through clickhouse-connect; embedded chDB otherwise.",
             _clickhouse_server_unsupported),
)
"""The optional stores and services, and the distributions each needs."""


def _backends() -> list[ModuleInfo]:
    version = own_version()
    out = []
    for backend in BACKENDS:
        missing = tuple(d for d in backend.requires if not installed(d))
        reason = backend.unsupported()
        description = backend.description
        if missing:
            description += f" Install with: pip install 'workbench[{backend.name}]'."
        if reason:
            description += f" Unavailable: {reason}."
        out.append(ModuleInfo("backend", backend.name, version, "builtin", backend.capabilities, backend.requires,
                              missing, not missing and reason is None, description))
    return out
