"""The Grafana dashboard and the alert rules name only metrics the worker really exports:
checked against a real Prometheus scrape of a worker that handled records."""

from __future__ import annotations

import json
import re

import yaml
from prometheus_client.parser import text_string_to_metric_families

from pocketvl.errors import InferenceUnavailable
from pocketvl.telemetry import (
    WorkerMetrics,
    observe_readiness,
    observe_worker,
    prometheus_metrics,
    prometheus_text,
)
from pocketvl.worker.loop import Snapshot, Worker
from pocketvl.worker.ports import Partition
from tests.conftest import REPO
from tests.support.fakes import InMemorySink, InMemorySource, ScriptedInference
from tests.support.pipelines import make_pipeline
from tests.unit.test_worker_loop import records, valid

OBSERVABILITY = REPO / "deploy" / "observability"
METRIC = re.compile(r"\bpocketvl_[a-z_]+\b")


def scraped_names() -> set[str]:
    """Every sample name a worker's /metrics holds after answering (once Triton came back:
    a retry) and dead-lettering."""
    meters, registry = prometheus_metrics()
    meter = meters.get_meter("pocketvl.worker")
    pipeline = make_pipeline(
        ScriptedInference(errors=[InferenceUnavailable("model_unavailable", "down")])
    )
    pipeline.metrics = WorkerMetrics.create(meter)
    worker = Worker(pipeline, InMemorySource([records(valid("a"), b"{oops")]), InMemorySink())
    observe_worker(meter, worker)
    observe_readiness(meter, lambda: True, lambda: {"internvl2_tiny_qwen2": True})
    worker.run(max_records=2, idle_timeout_s=0.5)
    worker.snapshot = Snapshot(  # what a busy worker reports: lag and a paused partition
        3, {"m": 5}, {"m": 1}, 2, {Partition("pocketvl.medical.requests", 0): 12}, {"m": 3}
    )
    text = prometheus_text(registry).decode()
    meters.shutdown()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((OBSERVABILITY / "grafana-dashboard.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def alert_rules() -> list[dict[str, object]]:
    groups = yaml.safe_load((OBSERVABILITY / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_every_metric_the_dashboard_and_the_alerts_name_is_exported() -> None:
    exported = scraped_names()
    expressions = dashboard_expressions() + [str(rule["expr"]) for rule in alert_rules()]
    named = {name for expr in expressions for name in METRIC.findall(expr)}
    assert named, "the dashboard and the alerts name no pocketvl metric"
    assert named - exported == set(), f"exported: {sorted(exported)}"


def test_the_alerts_cover_lag_dlq_triton_and_readiness_and_say_what_to_do() -> None:
    rules = {str(rule["alert"]): rule for rule in alert_rules()}
    watched = {name: set(METRIC.findall(str(rule["expr"]))) for name, rule in rules.items()}
    assert {"pocketvl_consumer_lag"} in watched.values()
    assert any("pocketvl_messages_processed_total" in names for names in watched.values())
    assert {"pocketvl_model_ready"} in watched.values()
    assert {"pocketvl_ready"} in watched.values()
    for name, rule in rules.items():
        assert rule["for"], name
        labels, notes = rule["labels"], rule["annotations"]
        assert isinstance(labels, dict) and labels["severity"] in ("warning", "critical"), name
        assert isinstance(notes, dict) and notes["summary"] and notes["description"], name


def test_every_dashboard_panel_queries_prometheus() -> None:
    dashboard = json.loads((OBSERVABILITY / "grafana-dashboard.json").read_text())
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        assert panel["datasource"]["type"] == "prometheus", panel["title"]
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
