"""The alert rules and the Grafana dashboard in deploy/ load, parse as PromQL, and use only
metrics evledger exposes (connectors.metrics): a renamed metric breaks this test, not the
on-call engineer's night."""

from __future__ import annotations

import json
import re
from pathlib import Path

import promql_parser
import pytest
import yaml

from connectors import metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NAME = re.compile(r"\bevledger_[a-z_]+\b")


def exposed() -> set[str]:
    return metrics.metric_names() | {
        metrics.OUTBOX_PENDING,
        metrics.OUTBOX_OLDEST,
        metrics.IN_DOUBT,
        metrics.IN_DOUBT_OLDEST,
        metrics.TRIAL_BALANCE,
        metrics.DATABASE_UP,
    }


def check(expr: str, where: str) -> set[str]:
    promql_parser.parse(expr)  # raises on a syntax error
    names = set(NAME.findall(expr))
    assert names, f"{where}: no evledger metric in {expr!r}"
    unknown = names - exposed()
    assert not unknown, f"{where}: {sorted(unknown)} are not metrics evledger exposes"
    return names


def test_every_alert_rule_parses_and_names_real_metrics() -> None:
    doc = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    rules = [rule for group in doc["groups"] for rule in group["rules"]]
    assert {r["alert"] for r in rules} >= {
        "EvledgerConsumerLagGrowing",
        "EvledgerRejectionsSpiking",
        "EvledgerCircuitBreakerOpen",
        "EvledgerInDoubtAttemptsAging",
        "EvledgerTrialBalanceOff",
    }
    for rule in rules:
        assert set(rule) >= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}
        check(rule["expr"], rule["alert"])


def test_every_dashboard_panel_parses_and_names_real_metrics() -> None:
    dash = json.loads((DEPLOY / "grafana" / "evledger.json").read_text())
    assert dash["uid"] and dash["panels"]
    used: set[str] = set()
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used |= check(target["expr"], panel["title"])
    # The dashboard shows the loop, lag, latency, providers and the money invariant.
    assert {"evledger_events_applied_total", "evledger_consumer_lag_records",
            "evledger_trial_balance_difference_minor_units"} <= used  # fmt: skip


def test_a_misspelt_metric_is_caught() -> None:
    with pytest.raises(AssertionError, match="evledger_events_aplied_total"):
        check("sum(rate(evledger_events_aplied_total[5m]))", "typo")
