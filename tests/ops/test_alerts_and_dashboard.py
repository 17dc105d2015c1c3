"""deploy/prometheus/alerts.yml and deploy/grafana/stockyard.json: Prometheus accepts the
rules and their unit tests pass, and every metric they name is one /metrics exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"
RULE_TESTS = DEPLOY / "prometheus" / "alerts.test.yml"
DASHBOARD = DEPLOY / "grafana" / "stockyard.json"
PROMTOOL = shutil.which("promtool")
METRIC = re.compile(r"\bstockyard_[a-z_]+\b")
SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")


def _family(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _rule_expressions() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def _dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


@pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (.ci/run installs Debian's prometheus package for it)",
)
def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    for args in (["check", "rules", str(RULES)], ["test", "rules", str(RULE_TESTS)]):
        run = subprocess.run(
            [str(PROMTOOL), *args], capture_output=True, text=True, timeout=120, check=False
        )
        assert run.returncode == 0, run.stdout + run.stderr


def test_every_rule_has_a_unit_test_that_fires_it() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    alerts = {rule["alert"] for group in groups for rule in group["rules"]}
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts == fired


async def test_every_metric_the_rules_and_the_dashboard_name_is_exported(
    client: httpx.AsyncClient,
) -> None:
    await client.get("/health")
    scrape = await client.get("/metrics")
    assert scrape.status_code == 200
    exported = {family.name for family in text_string_to_metric_families(scrape.text)}
    named = {
        _family(name)
        for expr in _rule_expressions() + _dashboard_expressions()
        for name in METRIC.findall(expr)
    }
    assert len(named) >= 10
    missing = sorted(named - exported)
    assert not missing, f"named by the rules or the dashboard, not exported: {missing}"


def test_the_dashboard_is_one_panel_per_question_with_unique_ids() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    titles = " ".join(panel["title"] for panel in dashboard["panels"]).lower()
    for topic in ("route and status", "latency", "rate limiter", "database pool", "webhook"):
        assert topic in titles, topic
