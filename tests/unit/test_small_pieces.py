"""Topics, cache keys, routing and settings: the pure helpers around the pipeline."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from pocketvl.errors import RouteError
from pocketvl.settings import (
    KafkaSettings,
    Route,
    Settings,
    WorkerSettings,
    as_environment,
)
from pocketvl.worker.caching import cache_key
from pocketvl.worker.envelope import all_topics, answer_event_id, domain_of, passthrough_headers
from pocketvl.worker.routing import resolve_route


def test_topic_names_and_domains() -> None:
    assert "pocketvl.remote_sensing.requests" in all_topics("pocketvl")
    assert len(all_topics("p")) == 9
    assert domain_of("pocketvl", "pocketvl.remote_sensing.requests") == "remote_sensing"
    assert domain_of("pocketvl", "pocketvl.medical.answers") is None
    assert domain_of("pocketvl", "other.medical.requests") is None
    assert domain_of("pocketvl", "pocketvl.astro.requests") is None


def test_only_x_headers_pass_through() -> None:
    headers = [("x-request-id", b"1"), ("X-Tenant", b"a"), ("ce_id", b"e"), ("traceparent", b"t")]
    assert passthrough_headers(headers) == [("x-request-id", b"1"), ("X-Tenant", b"a")]


def test_answer_ids_are_deterministic_per_request() -> None:
    assert answer_event_id("a") == answer_event_id("a") != answer_event_id("b")


BASE: dict[str, Any] = {
    "prefix": "pv",
    "checkpoint": "ck",
    "model_version": "1",
    "engine": {"triton_model": "m"},
    "image_digests": ["aa"],
    "task": {"type": "vqa", "question": "q"},
    "generation": {"max_new_tokens": 8},
}


def test_cache_key_is_stable_and_sensitive_to_every_input() -> None:
    key = cache_key(**BASE)
    assert key == cache_key(**dict(reversed(BASE.items())))
    assert key.startswith("pv:res:v3:")
    changes = {
        "checkpoint": "other",
        "model_version": "2",
        "engine": {"triton_model": "n"},
        "image_digests": ["bb"],
        "task": {"type": "vqa", "question": "Q"},
        "generation": {"max_new_tokens": 9},
    }
    for field, value in changes.items():
        assert cache_key(**(BASE | {field: value})) != key, field
    swapped = BASE | {"task": {"question": "q", "type": "vqa"}}
    assert cache_key(**swapped) == key


ROUTES = {
    "medical/vqa": Route(triton_model="a", checkpoint="A"),
    "medical/vqa/4b": Route(triton_model="b", checkpoint="B"),
}


def test_routing_prefers_the_requested_size_and_refuses_unknown_ones() -> None:
    assert resolve_route(ROUTES, "medical", "vqa", None)[1].triton_model == "a"
    assert resolve_route(ROUTES, "medical", "vqa", "4b")[1].triton_model == "b"
    with pytest.raises(RouteError, match="medical/vqa/2b"):
        resolve_route(ROUTES, "medical", "vqa", "2b")
    with pytest.raises(RouteError, match="medical/choice"):
        resolve_route(ROUTES, "medical", "choice", None)


def test_default_routes_cover_every_task() -> None:
    assert len(Settings().routing.routes) == 8


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POCKETVL_KAFKA__BOOTSTRAP_SERVERS", "broker:9093")
    monkeypatch.setenv(
        "POCKETVL_ROUTING__ROUTES", '{"driving/drivelm": {"triton_model": "x", "checkpoint": "y"}}'
    )
    settings = Settings()
    assert settings.kafka.bootstrap_servers == "broker:9093"
    assert list(settings.routing.routes) == ["driving/drivelm"]


def test_settings_travel_to_a_subprocess_as_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers="b:1", session_timeout_ms=6000),
        worker=WorkerSettings(max_in_flight=8, model_in_flight={"m": 2}, ordering="none"),
        cache_enabled=False,
    )
    settings.routing.routes["medical/vqa"] = Route(triton_model="x", checkpoint="y")
    env = as_environment(settings)
    assert env["POCKETVL_WORKER__MODEL_IN_FLIGHT"] == '{"m": 2}'
    assert "POCKETVL_REDIS__URL" not in env  # defaults stay out
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings() == settings


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"POCKETVL_KAFKA__TOPIC_PREFIX": "bad prefix!"}, "topic_prefix"),
        (
            {"POCKETVL_ROUTING__ROUTES": '{"astro/vqa": {"triton_model": "x", "checkpoint": "y"}}'},
            "route key",
        ),
        ({"POCKETVL_KAFKA__HEARTBEAT_INTERVAL_MS": "5000"}, "heartbeat"),
        ({"POCKETVL_LIMITS__MAX_INLINE_IMAGE_BYTES": "99999999"}, "inline"),
        ({"POCKETVL_WORKER__ORDERING": "by-key"}, "ordering"),
    ],
)
def test_contradictory_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError, match=message):
        Settings()


def test_ports_chosen_together_are_distinct_and_bindable() -> None:
    import socket

    from pocketvl.devstack.processes import free_ports

    for _ in range(50):
        ports = free_ports(5)
        assert len(set(ports)) == 5
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[0]))  # really free
