"""The Prometheus alert rules (deploy/prometheus/alerts.yml) are valid and behave as
their unit tests (alerts.test.yml) say, checked by ``promtool`` when it is installed;
and Prometheus loads them from where compose mounts them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
ALERTS = {
    "PospSwitchDown",
    "PospApprovalRateDrop",
    "PospLatencyP99OverBudget",
    "PospHsmDown",
    "PospNetworkLinkDown",
    "PospSafQueueGrowing",
    "PospShedRequests",
    "PospInDoubtSweeperFailing",
    "PospInDoubtWorkUnresolved",
    "PospJournalOpenRowsPilingUp",
}


def _promtool() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install -y prometheus)")
    return promtool


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=PROMETHEUS)


def test_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    """promtool check rules + promtool test rules (every alert fires and stays quiet
    where its test says)."""
    promtool = _promtool()
    checked = _run(promtool, "check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _run(promtool, "test", "rules", "alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_is_defined_unit_tested_and_loaded_by_prometheus() -> None:
    """Each required alert exists, has a firing case in alerts.test.yml, and
    prometheus.yml loads the rules file compose mounts next to it."""
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    defined = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert defined >= ALERTS
    tests = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())["tests"]
    firing = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert firing >= defined
    assert "alerts.yml" in yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())["rule_files"]
    compose = (PROMETHEUS.parent / "compose.yaml").read_text()
    assert "./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in compose
