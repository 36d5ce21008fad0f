"""The alert rules and the dashboard cannot silently rot: every metric they name is one
the code exports (HQ API, ingest worker, till, sync agent), promtool accepts the rules
and their unit tests pass, and docs/operations.md explains every alert."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from edge.devices.config import DevicesConfig
from edge.devices.manager import DeviceManager
from edge.metrics import SyncCollector, TillMetrics
from edge.sync.agent import SyncAgent
from edge.sync.config import SyncConfig
from hq.metrics import HqCollector, WorkerMetrics
from hq.models import bind as hq_bind
from hq.models import open_database as hq_open

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "docs" / "alerts" / "huiyuan.rules.yml"
RULE_TESTS = ROOT / "docs" / "alerts" / "huiyuan.rules.test.yml"
DASHBOARD = ROOT / "docs" / "dashboards" / "huiyuan.json"
OPERATIONS = ROOT / "docs" / "operations.md"
METRIC = re.compile(r"\b(huiyuan_[a-z0-9_]+)\b")
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}


def series_names(registry: CollectorRegistry) -> set[str]:
    """Every series name a registry can export, whether or not it has samples now."""
    names = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


@pytest.fixture
def exported(demo_till, tmp_path) -> set[str]:
    hq_db = hq_open(f"sqlite:///{tmp_path / 'hq.sqlite3'}")
    hq_bind(hq_db)
    manager = DeviceManager.from_config(DevicesConfig.from_dict({}), tmp_path / "devices")
    try:
        registries = [WorkerMetrics().registry, TillMetrics(demo_till, manager).registry]
        for collector in (HqCollector(hq_db), SyncCollector(SyncAgent(demo_till, SyncConfig()))):
            registry = CollectorRegistry(auto_describe=False)
            registry.register(collector)
            registries.append(registry)
        return set().union(*(series_names(r) for r in registries))
    finally:
        hq_db.close()


def rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in doc["templating"]["list"] if "definition" in v]
    return exprs


def test_the_code_exports_what_the_rules_and_dashboard_are_built_on(exported):
    assert {"huiyuan_store_backlog_items", "huiyuan_checkout_seconds_bucket"} <= exported
    for where, exprs in (("rules", [r["expr"] for r in rules()]), ("dashboard", dashboard_exprs())):
        used = {name for expr in exprs for name in METRIC.findall(expr)}
        assert used, where
        assert used - exported == set(), f"{where} name metrics nobody exports"


def test_every_alert_says_how_bad_and_what_it_is():
    names = [r["alert"] for r in rules()]
    assert len(names) == len(set(names))
    for rule in rules():
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


def test_operations_explains_every_alert():
    text = OPERATIONS.read_text(encoding="utf-8")
    missing = [r["alert"] for r in rules() if r["alert"] not in text]
    assert missing == []


def test_every_dashboard_panel_asks_prometheus_something():
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    for panel in doc["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["type"] == "prometheus", panel["title"]
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]


def promtool() -> str:
    """Debian's promtool (the Makefile's setup puts it beside the venv's python)."""
    found = shutil.which("promtool") or shutil.which(
        "promtool", path=str(Path(sys.executable).parent)
    )
    assert found, (
        "promtool not found: run `make setup` (it installs promtool from Debian's prometheus)"
    )
    return found


def test_promtool_accepts_the_rules_and_their_unit_tests_pass():
    check = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(rules())} rules found" in check.stdout
    test = subprocess.run(
        [promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, timeout=120
    )
    assert test.returncode == 0, test.stdout + test.stderr
