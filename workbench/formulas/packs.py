"""The metric-pack registry: named YAML files of derived metrics.

The core pack ships in ``rules/metrics/core.yaml``; other packages add packs through the
``workbench.metric_packs`` entry-point group (the entry point loads to the path of a YAML file).
"""

from __future__ import annotations

import functools
import re
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import yaml

from workbench.errors import ConfigError
from workbench.formulas.catalog import MetricDef
from workbench.formulas.units import DECLARABLE, FORMATS, Unit

RULES_DIR = Path(__file__).resolve().parents[2] / "rules"
NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class MetricPackRegistry:
    """Pack names to YAML files."""

    def __init__(self) -> None:
        self._paths: dict[str, Path] = {}

    def register(self, name: str, path: Path) -> None:
        self._paths[name] = Path(path)

    def register_entry_points(self) -> None:
        for ep in entry_points(group="workbench.metric_packs"):
            self.register(ep.name, Path(ep.load()))

    def names(self) -> list[str]:
        return sorted(self._paths)

    def path(self, name: str) -> Path:
        return self._paths[name]

    def definitions(self) -> dict[str, MetricDef]:
        """Every pack's metrics by name; two packs defining one name is an error."""
        out: dict[str, MetricDef] = {}
        for pack in self.names():
            for name, definition in _load(self._paths[pack], pack, self._paths[pack].stat().st_mtime_ns).items():
                if name in out:
                    raise ConfigError(f"metric '{name}' is defined by both the {out[name].origin} and "
                                      f"pack:{pack} metric packs; remove one of them")
                out[name] = definition
        return out


def check_unit_and_format(unit: Any, fmt: Any, where: str) -> tuple[Unit | None, str | None]:
    """Validate a declared unit and format (both optional)."""
    if unit is not None and unit not in {u.value for u in DECLARABLE}:
        raise ConfigError(f"{where}: unknown unit '{unit}'; units: {', '.join(sorted(u.value for u in DECLARABLE))}")
    if fmt is not None and fmt not in FORMATS:
        raise ConfigError(f"{where}: unknown format '{fmt}'; formats: {', '.join(FORMATS)}")
    return (Unit(unit) if unit is not None else None), fmt


def read_pack(path: Path, kind: str, key: str) -> list[Any]:
    """The ``key`` list of a YAML pack file (metrics, rules), or a ConfigError saying what is wrong."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{kind} pack {path} cannot be read: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get(key), list):
        raise ConfigError(f"{kind} pack {path} needs a '{key}' list")
    return doc[key]


def load_pack(path: Path, pack: str) -> dict[str, MetricDef]:
    """The metric definitions of one pack file, validated (``ConfigError`` saying what is wrong)."""
    return _load(path, pack, path.stat().st_mtime_ns)


@functools.cache
def _load(path: Path, pack: str, _mtime: int) -> dict[str, MetricDef]:
    out: dict[str, MetricDef] = {}
    for i, item in enumerate(read_pack(path, "metric", "metrics")):
        where = f"{path.name}, metric {i + 1}"
        if not (isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("formula"), str)):
            raise ConfigError(f"{where}: each metric needs a name and a formula")
        extra = set(item) - {"name", "formula", "description", "unit", "format"}
        if extra:
            raise ConfigError(f"{where}: unknown keys {', '.join(sorted(extra))}")
        if not NAME.match(item["name"]):
            raise ConfigError(f"{where}: '{item['name']}' is not a valid metric name (lower case, digits, _)")
        unit, fmt = check_unit_and_format(item.get("unit"), item.get("format"), where)
        out[item["name"]] = MetricDef(item["name"], item["formula"], item.get("description", ""), unit, fmt,
                                      origin=f"pack:{pack}")
    return out


metric_packs = MetricPackRegistry()
metric_packs.register("core", RULES_DIR / "metrics" / "core.yaml")
metric_packs.register_entry_points()
