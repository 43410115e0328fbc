"""The module registry: every registry listed, third-party plug-ins from a real installed
distribution (a ``*.dist-info`` folder on sys.path), optional dependencies, and `workbench modules`."""

from __future__ import annotations

import importlib.metadata
import json
import re
import sys
import textwrap

import pytest
import typer
from typer.testing import CliRunner

from connectors import connectors
from connectors.base import Connector, StreamSpec
from connectors.writers import platform_writers
from workbench import modules
from workbench.cli_modules import modules as modules_command
from workbench.errors import ValidationError
from workbench.formulas.packs import metric_packs
from workbench.modules import KINDS, ModuleInfo, list_modules, modules_frame
from workbench.notify.registry import channels
from workbench.rules.model import Action

PLUGIN = "acme_workbench_plugin"
DIST = "acme-workbench-plugin"

PLUGIN_SOURCE = '''
from pathlib import Path
from typing import ClassVar

from connectors.base import Connector, StreamSpec
from workbench.notify.base import Channel

PACK = str(Path(__file__).with_name("acme_pack.yaml"))


class AcmeConnector(Connector):
    """Acme Ads reporting rows."""

    name = "acme"
    streams = (StreamSpec("acme.report_daily", "daily rows"),)
    capabilities = frozenset({"read", "write"})
    requires: ClassVar[tuple[str, ...]] = ("polars",)

    def read(self, window):
        yield from ()


class AcmeLegacyConnector(AcmeConnector):
    """Acme Ads through the old SDK."""

    requires: ClassVar[tuple[str, ...]] = ("acme-legacy-sdk-not-installed",)


class AcmeChannel(Channel):
    """Posts to Acme chat rooms."""

    configurable = True
    setting_fields = ("room",)


def acme_writer(platform, stores, org_id):
    """Pause and budgets of Acme campaigns."""
    raise NotImplementedError("not called by the listing")
'''

ENTRY_POINTS = f"""
[workbench.connectors]
acme = {PLUGIN}:AcmeConnector
acme_legacy = {PLUGIN}:AcmeLegacyConnector

[workbench.notification_channels]
acme_chat = {PLUGIN}:AcmeChannel

[workbench.platform_writers]
acme = {PLUGIN}:acme_writer

[workbench.metric_packs]
acme = {PLUGIN}:PACK
"""


@pytest.fixture
def registries(monkeypatch):
    """Every registry's contents as a copy, restored after the test."""
    monkeypatch.setattr(connectors, "_classes", dict(connectors._classes))
    monkeypatch.setattr(channels, "_classes", dict(channels._classes))
    monkeypatch.setattr(platform_writers, "_factories", dict(platform_writers._factories))
    monkeypatch.setattr(metric_packs, "_paths", dict(metric_packs._paths))


@pytest.fixture
def plugin(tmp_path, monkeypatch, registries):
    """An installed third-party distribution registering one plug-in of each pluggable kind."""
    site = tmp_path / "site"
    site.mkdir()
    (site / f"{PLUGIN}.py").write_text(PLUGIN_SOURCE)
    (site / "acme_pack.yaml").write_text(textwrap.dedent("""
        metrics:
          - {name: acme_cost_per_view, formula: "spend / video_views", unit: money}
          - {name: acme_margin, formula: "1 - spend / revenue"}
    """))
    info = site / f"{PLUGIN}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DIST}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(site))  # restored (and import caches invalidated) by monkeypatch
    for registry in (connectors, channels, platform_writers, metric_packs):
        registry.register_entry_points()
    yield site
    sys.modules.pop(PLUGIN, None)


def by_name(infos: list[ModuleInfo]) -> dict[str, ModuleInfo]:
    return {m.name: m for m in infos}


# -- the built-ins ---------------------------------------------------------------------------

def test_every_registry_is_listed_in_kind_order():
    infos = list_modules()
    kinds = [m.kind for m in infos]
    assert kinds == sorted(kinds, key=KINDS.index) and set(kinds) == set(KINDS)
    names = {kind: sorted(m.name for m in infos if m.kind == kind) for kind in KINDS}
    assert names["connector"] == connectors.names()
    assert names["platform_writer"] == platform_writers.platforms()
    assert names["channel"] == channels.names()
    assert names["metric_pack"] == metric_packs.names()
    assert names["rule_action"] == sorted(["pause", "resume", "set_budget", "change_budget", "notify", "webhook"])
    assert names["backend"] == ["clickhouse-server", "postgres", "redis", "s3"]


def test_builtins_carry_the_workbench_version_and_their_capabilities():
    version = importlib.metadata.version("workbench")
    plugins = [m for m in list_modules() if m.kind != "backend"]
    assert {(m.origin, m.version) for m in plugins} == {("builtin", version)}
    meta = by_name(list_modules("connector"))["meta"]
    assert meta.capabilities == ("async_reports", "read", "write") and meta.available
    assert "meta.ad_insights_daily" in meta.description and "``" not in meta.description
    assert by_name(list_modules("connector"))["csv"].capabilities == ("read",)
    core = sorted(name for name, d in metric_packs.definitions().items() if d.origin == "pack:core")
    assert list(by_name(list_modules("metric_pack"))["core"].capabilities) == core and "cpa" in core
    writer = by_name(list_modules("platform_writer"))["meta"]
    assert writer.capabilities == ("pause", "resume", "set_budget", "synthetic", "connection")
    slack = by_name(list_modules("channel"))["slack"]
    assert slack.capabilities == ("configurable", "rule_notify") and "webhook_url" in slack.description


def test_rule_actions_say_what_they_need():
    actions = by_name(list_modules("rule_action"))
    assert set(actions) == set(Action.model_fields["type"].annotation.__args__)
    assert "Needs a platform writer; platforms with one: dv360, meta, ttd." in actions["pause"].description
    assert actions["set_budget"].capabilities == ("dry_run", "approval", "execute", "undo")
    assert actions["notify"].capabilities == ("email", "slack", "inapp", "webhook")
    assert actions["webhook"].capabilities == ("webhook",)
    assert all(a.available for a in actions.values())


def test_rule_actions_are_unavailable_without_writers_or_channels(registries):
    platform_writers._factories.clear()
    del channels._classes["webhook"]
    del channels._classes["slack"]
    actions = by_name(list_modules("rule_action"))
    assert not actions["pause"].available and "none is registered" in actions["pause"].description
    assert not actions["webhook"].available and "It is not registered" in actions["webhook"].description
    assert actions["notify"].available and actions["notify"].capabilities == ("email", "inapp")


# -- third-party plug-ins from entry points -------------------------------------------------

def test_entry_point_plugins_are_listed_with_their_distribution(plugin):
    own = importlib.metadata.version("workbench")
    found = by_name(list_modules("connector"))
    acme = found["acme"]
    assert (acme.origin, acme.version) == (f"entry point {DIST}", "1.2.3")
    assert acme.capabilities == ("read", "write") and acme.description == "Acme Ads reporting rows. Streams: acme.report_daily."
    assert (acme.requires, acme.missing, acme.available) == (("polars",), (), True)
    legacy = found["acme_legacy"]
    assert legacy.missing == ("acme-legacy-sdk-not-installed",) and not legacy.available
    assert (found["meta"].origin, found["meta"].version) == ("builtin", own)

    chat = by_name(list_modules("channel"))["acme_chat"]
    # a third-party channel cannot be named in a rule's notify action (the rule model's fixed list)
    assert (chat.origin, chat.version, chat.capabilities) == (f"entry point {DIST}", "1.2.3", ("configurable",))
    assert chat.description == "Posts to Acme chat rooms."

    writer = by_name(list_modules("platform_writer"))["acme"]
    assert (writer.origin, writer.capabilities) == (f"entry point {DIST}", ("pause", "resume", "set_budget"))
    assert "acme, dv360, meta, ttd" in by_name(list_modules("rule_action"))["pause"].description

    pack = by_name(list_modules("metric_pack"))["acme"]
    assert (pack.origin, pack.version, pack.available) == (f"entry point {DIST}", "1.2.3", True)
    assert pack.capabilities == ("acme_cost_per_view", "acme_margin")


def test_a_later_registration_replaces_the_entry_point_in_the_listing(plugin):
    class HandMade(Connector):
        streams = (StreamSpec("acme.report_daily", "daily rows"),)

        def read(self, window):
            yield from ()

    connectors.register("acme", HandMade)
    acme = by_name(list_modules("connector"))["acme"]
    assert acme.origin == f"registered by {__name__}" and acme.version == "unknown"
    assert acme.description == "Streams: acme.report_daily."  # no docstring of its own, none inherited


def test_a_pack_that_does_not_load_is_listed_as_unavailable(registries, tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("metrics:\n  - {name: Bad Name, formula: spend}\n")
    metric_packs.register("broken", broken)
    metric_packs.register("gone", tmp_path / "gone.yaml")
    packs = by_name(list_modules("metric_pack"))
    assert not packs["broken"].available and "'Bad Name' is not a valid metric name" in packs["broken"].description
    assert packs["broken"].origin == "registered at run time"
    assert not packs["gone"].available and "gone.yaml" in packs["gone"].description
    assert packs["core"].available


# -- back-ends and optional dependencies ----------------------------------------------------

def test_backends_need_what_the_workbench_extras_install():
    extras: dict[str, set[str]] = {}
    for req in importlib.metadata.requires("workbench") or []:
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", req)
        if extra:
            extras.setdefault(extra.group(1), set()).add(re.match(r"[A-Za-z0-9._-]+", req).group(0))
    backends = by_name(list_modules("backend"))
    for name in ("postgres", "redis", "clickhouse-server"):
        assert set(backends[name].requires) == extras[name], name
    # S3 goes through pyiceberg's PyArrow FileIO: nothing beyond the core dependencies
    assert backends["s3"].requires == ()


def test_a_missing_dependency_makes_a_backend_unavailable(monkeypatch):
    real = modules.distribution

    def without_redis(name):
        if name == "redis":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(modules, "distribution", without_redis)
    backends = by_name(list_modules("backend"))
    redis = backends["redis"]
    assert (redis.missing, redis.available) == (("redis",), False)
    assert "pip install 'workbench[redis]'" in redis.description
    assert backends["postgres"].available and backends["postgres"].missing == ()


def test_clickhouse_server_is_unavailable_while_the_engine_setting_allows_only_chdb():
    server = by_name(list_modules("backend"))["clickhouse-server"]
    assert not server.available and server.missing == ()
    assert "accepts only chdb" in server.description


def test_installed_reads_requirement_names():
    assert modules.installed("polars") and modules.installed("polars>=0.1")
    assert not modules.installed("acme-legacy-sdk-not-installed") and not modules.installed(">=1")


# -- kinds, the frame and the command -------------------------------------------------------

def test_kinds_accept_plurals_and_dashes_and_refuse_unknown_ones():
    assert modules.check_kind("rule-actions") == "rule_action" and modules.check_kind("Backends") == "backend"
    with pytest.raises(ValidationError, match="unknown module kind 'plugins'; kinds: connector, rule_action, "
                                              "platform_writer, channel, metric_pack, backend"):
        list_modules("plugins")


def test_the_frame_has_one_row_per_module():
    df = modules_frame("connector")
    assert df.columns == ["kind", "name", "version", "origin", "available", "capabilities", "requires",
                          "missing", "description"]
    assert df["name"].to_list() == connectors.names()
    assert df.filter(df["name"] == "dv360")["capabilities"].item() == "async_reports, read, write"
    assert modules_frame().height == len(list_modules())


@pytest.fixture
def cli():
    app = typer.Typer()
    app.command()(modules_command)
    return lambda *args: CliRunner().invoke(app, list(args))


def test_command_prints_json_csv_and_a_table(cli, plugin):
    done = cli("--kind", "connectors", "--format", "json")
    assert done.exit_code == 0, done.output
    rows = json.loads(done.stdout)
    assert {r["name"]: r["origin"] for r in rows}["acme"] == f"entry point {DIST}"
    assert {r["kind"] for r in rows} == {"connector"}

    csv = cli("--format", "csv")
    assert csv.exit_code == 0 and csv.stdout.splitlines()[0].startswith("kind,name,version,origin,available")
    assert len(csv.stdout.splitlines()) == len(list_modules()) + 1

    table = cli("--kind", "connector")
    assert table.exit_code == 0 and "acme_legacy" in table.stdout
    assert f"{len(connectors.names())} modules, 1 unavailable: connector acme_legacy" in table.stdout


def test_command_refuses_an_unknown_kind(cli):
    done = cli("--kind", "plugins")
    # a WorkbenchError: `workbench` prints its message as one line and exits 1
    assert isinstance(done.exception, ValidationError) and done.stdout == ""
    assert str(done.exception) == ("unknown module kind 'plugins'; kinds: connector, rule_action, platform_writer, "
                                   "channel, metric_pack, backend")
