"""Every metric the Grafana dashboard and the alert rules query is one the
plugin really exports: compared with a live /metrics of the real plugin."""

from __future__ import annotations

import json
import re

import pytest

from tests.support import plugin
from tests.support.kmsclient import round_trip
from tests.support.packaging import REPO

pytestmark = pytest.mark.packaging

DASHBOARD = REPO / "deploy/grafana/kms-appliance-dashboard.json"
RULES = REPO / "deploy/prometheus/kms-appliance-rules.yml"
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "gauge": ("",), "summary": ("", "_sum", "_count", "_created"), "info": ("_info",)}
# Identifiers in PromQL that are functions, keywords or label names, not metrics.
NOT_METRICS = {"sum", "by", "rate", "increase", "histogram_quantile", "time", "on", "or", "and",
               "without", "le", "instance", "method", "api", "outcome", "backend", "operation",
               "event", "reason", "job", "label_values", "max", "min", "avg", "count", "ignoring",
               "group_left", "unless", "bool", "offset", "thread", "mode"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Sample names /metrics can carry, from a live plugin after real calls."""
    with plugin.running(tmp_path_factory.mktemp("metrics")) as p:
        round_trip(p.socket)
        p.audit_settled()  # calls are counted when the audit flusher runs
        status, body = p.http("/metrics")
    assert status == 200
    names: set[str] = set()
    for line in body.decode().splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split()
            if kind == "counter":  # the text format names a counter's family with its _total
                family = family.removesuffix("_total")
            names.update(family + s for s in SUFFIXES[kind])
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    assert "kms_appliance_calls_total" in names and "kms_appliance_call_duration_seconds_bucket" in names
    return names


def _metric_names(expr: str) -> set[str]:
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values and strings
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors
    expr = re.sub(r"\{[^}]*\}", "{}", expr)  # label matchers
    return {t for t in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr) if t not in NOT_METRICS}


def test_dashboard_queries_name_exported_metrics(exported: set[str]) -> None:
    dash = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    queries += [v["definition"] for v in dash["templating"]["list"] if v["type"] == "query"]
    assert len(queries) >= 15
    used: set[str] = set()
    for expr in queries:
        names = _metric_names(expr.replace("$__rate_interval", "").replace("$instance", ""))
        assert names, f"no metric in {expr!r}"
        unknown = names - exported
        assert not unknown, f"{expr!r} queries {unknown}, not exported by the plugin"
        used |= names
    # The dashboard shows every metric family the plugin has.
    families = {n.removesuffix("_total").removesuffix("_bucket") for n in exported
                if n.startswith("kms_appliance_") and not n.endswith(("_created", "_sum", "_count"))}
    shown = {n.removesuffix("_total").removesuffix("_bucket").removesuffix("_sum").removesuffix("_count")
             for n in used}
    assert families <= shown, f"not on the dashboard: {families - shown}"


def test_alert_rules_name_exported_metrics(exported: set[str]) -> None:
    exprs = re.findall(r"expr: (?:\|\n)?((?:.+\n?)+?)(?=\s+(?:for|labels):)", RULES.read_text())
    assert len(exprs) == 7
    for expr in exprs:
        names = _metric_names(expr) - {"up"}  # up is Prometheus's own, per scrape target
        assert not names - exported, f"{expr!r} queries {names - exported}"


def test_name_extraction_sees_unknown_metrics(exported: set[str]) -> None:
    """The comparison can fail: a misspelt metric is reported."""
    assert _metric_names('rate(kms_appliance_call_total{outcome!="ok"}[5m])') - exported == \
        {"kms_appliance_call_total"}


def test_dashboard_is_valid_grafana_json() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "kms-appliance" and dash["schemaVersion"] >= 30
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}" and p["targets"]
