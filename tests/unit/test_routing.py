"""Routing on in-memory ports: canary splits sticky by key, fallback when a model is not
loaded (and the cache key of the model that served), versions that follow Triton."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pocketvl.cli.main import main
from pocketvl.errors import InferenceError, InferenceUnavailable
from pocketvl.settings import Canary, Route, RouteTarget
from pocketvl.worker.pipeline import Pipeline
from pocketvl.worker.ports import GenerationResult
from pocketvl.worker.routing import (
    BUCKETS,
    first_choice_models,
    resolve_route,
    route_targets,
    split_bucket,
    sticky_key,
)
from tests.support.examples import example
from tests.support.pipelines import make_pipeline, published, record

KEY = "medical/choice"


def canary_route(percent: float, fallback: bool = False) -> Route:
    return Route(
        triton_model="stable",
        checkpoint="stable-ckpt",
        canary=Canary(triton_model="candidate", checkpoint="candidate-ckpt", percent=percent),
        fallback=RouteTarget(triton_model="spare", checkpoint="spare-ckpt") if fallback else None,
    )


def first_model(route: Route, key: bytes) -> str:
    return route_targets(KEY, route, key)[0].triton_model


@settings(max_examples=300)
@given(key=st.binary(min_size=1, max_size=64), percent=st.floats(0, 100))
def test_a_key_always_sees_the_same_model_for_a_split(key: bytes, percent: float) -> None:
    route = canary_route(percent)
    assert len({first_model(route, key) for _ in range(3)}) == 1
    # A copy of the route (another replica, a restart) decides the same way.
    assert first_model(Route.model_validate(route.model_dump()), key) == first_model(route, key)


@settings(max_examples=200)
@given(key=st.binary(min_size=1, max_size=64), low=st.floats(0, 100), high=st.floats(0, 100))
def test_raising_the_share_only_moves_keys_onto_the_canary(
    key: bytes, low: float, high: float
) -> None:
    low, high = min(low, high), max(low, high)
    if first_model(canary_route(low), key) == "candidate":
        assert first_model(canary_route(high), key) == "candidate"


@pytest.mark.parametrize("percent", [0.0, 1.0, 5.0, 25.0, 50.0, 99.5, 100.0])
def test_the_split_over_many_keys_is_close_to_the_weight(percent: float) -> None:
    route = canary_route(percent)
    keys = [f"vehicle-{i}".encode() for i in range(20_000)]
    share = sum(first_model(route, k) == "candidate" for k in keys) / len(keys) * 100
    # Binomial spread over 20,000 keys: 4 standard deviations at most ~1.4 points.
    assert abs(share - percent) <= 1.5
    if percent in (0.0, 100.0):
        assert share == percent


def test_routes_split_independently_of_each_other() -> None:
    keys = [f"study-{i}".encode() for i in range(2_000)]
    a = [split_bucket("medical/choice", k) for k in keys]
    b = [split_bucket("medical/vqa", k) for k in keys]
    assert all(0 <= x < BUCKETS for x in a + b)
    assert sum(x == y for x, y in zip(a, b, strict=True)) < 10


def test_a_record_without_a_key_is_split_by_its_event_id() -> None:
    assert sticky_key(b"car-7", "e1") == b"car-7"
    assert sticky_key(None, "e1") == sticky_key(b"", "e1") == b"e1"


def test_the_order_of_models_to_try() -> None:
    route = canary_route(50, fallback=True)
    by_role = {
        tuple(t.role for t in route_targets(KEY, route, f"k{i}".encode())) for i in range(50)
    }
    assert by_role == {("canary", "primary", "fallback"), ("primary", "fallback")}
    plain = Route(triton_model="m", checkpoint="c")
    assert [t.role for t in route_targets(KEY, plain, b"k")] == ["primary"]


def test_readiness_asks_for_first_choices_not_fallbacks() -> None:
    routes = [canary_route(10, fallback=True), Route(triton_model="other", checkpoint="c")]
    assert first_choice_models(routes) == ["candidate", "other", "stable"]
    assert first_choice_models([canary_route(0, fallback=True)]) == ["stable"]


def test_a_route_must_name_distinct_models() -> None:
    with pytest.raises(ValueError, match="canary must be another Triton model"):
        Route(
            triton_model="m",
            checkpoint="c",
            canary=Canary(triton_model="m", checkpoint="c2", percent=5),
        )
    with pytest.raises(ValueError, match="percent"):
        canary_route(100.5)


class RoutedInference:
    """Per-model behaviour: models not loaded, the version each reports, calls in order."""

    def __init__(self) -> None:
        self.not_loaded: set[str] = set()
        self.versions: dict[str, str] = {}  # what model_version() says
        self.reported: dict[str, str] = {}  # what an answer reports (default: the same)
        self.calls: list[str] = []
        self.capacities: dict[str, int] = {}
        self.on_generate: Callable[[str], None] = lambda model: None

    def capacity(self, model: str) -> int | None:
        return self.capacities.get(model)

    def ready(self, model: str) -> bool:
        return model not in self.not_loaded

    def _check(self, model: str) -> None:
        if model in self.not_loaded:
            raise InferenceUnavailable("model_not_loaded", f"{model}: StatusCode.NOT_FOUND")

    def model_version(self, model: str) -> str:
        self._check(model)
        return self.versions.get(model, "1")

    def generate(
        self, model: str, images: list[bytes], question: str, max_new_tokens: int, max_tiles: int
    ) -> GenerationResult:
        self.calls.append(model)
        self.on_generate(model)
        self._check(model)
        version = self.reported.get(model, self.versions.get(model, "1"))
        return GenerationResult(f"B from {model}", 10, 1, version)


def routed_pipeline(inference: RoutedInference, route: Route) -> Pipeline:
    pipeline = make_pipeline(inference)  # type: ignore[arg-type]
    pipeline.settings.routing.routes[KEY] = route
    return pipeline


def ask(pipeline: Pipeline, event_id: str, key: bytes = b"study-1") -> dict[str, Any]:
    value = {**example("medical"), "event_id": event_id}
    out = published(pipeline, replace(record(value), key=key))
    assert out.topic.endswith("answers"), dict(out.headers)
    answer: dict[str, Any] = json.loads(out.value)
    return answer


def test_a_model_not_loaded_passes_the_request_to_the_fallback_at_once() -> None:
    inference = RoutedInference()
    pipeline = routed_pipeline(inference, canary_route(0, fallback=True))
    inference.not_loaded = {"stable"}
    first = ask(pipeline, "e1")
    assert first["model"] == {
        "checkpoint": "spare-ckpt",
        "triton_model": "spare",
        "version": "1",
        "served_by": "fallback",
    }
    assert first["cache"] == "miss"
    assert inference.calls == ["spare"]  # the version lookup said "not loaded": no retries
    # The primary is back: the same content is answered by it, not from the fallback's entry.
    inference.not_loaded = set()
    second = ask(pipeline, "e2")
    assert (second["model"]["served_by"], second["cache"]) == ("primary", "miss")
    assert second["raw_text"] == "B from stable"
    # ... and gone again: the fallback's own entry answers.
    inference.not_loaded = {"stable"}
    third = ask(pipeline, "e3")
    assert (third["model"]["triton_model"], third["cache"]) == ("spare", "hit")


def test_a_model_unloaded_between_version_and_inference_also_falls_back() -> None:
    inference = RoutedInference()
    pipeline = routed_pipeline(inference, canary_route(0, fallback=True))

    def unload(model: str) -> None:
        if model == "stable":  # Triton unloads it just as it is asked
            inference.not_loaded.add(model)

    inference.on_generate = unload
    answer = ask(pipeline, "e1")
    assert answer["model"]["served_by"] == "fallback"
    assert inference.calls == ["stable", "spare"]


def test_a_canary_not_loaded_passes_to_the_routes_own_model() -> None:
    inference = RoutedInference()
    pipeline = routed_pipeline(inference, canary_route(100))
    assert ask(pipeline, "e0")["model"]["served_by"] == "canary"
    inference.not_loaded = {"candidate"}
    answer = ask(pipeline, "e1")
    assert (answer["model"]["triton_model"], answer["model"]["served_by"]) == ("stable", "primary")


def test_without_a_fallback_a_model_not_loaded_is_retried_then_dead_lettered() -> None:
    inference = RoutedInference()
    pipeline = routed_pipeline(inference, Route(triton_model="stable", checkpoint="c"))
    inference.not_loaded = {"stable"}
    out = published(pipeline, record({**example("medical"), "event_id": "e1"}))
    headers = {k: v.decode() for k, v in out.headers}
    assert out.topic.endswith("dlq")
    assert (headers["dlq.reason"], headers["dlq.attempts"]) == ("model_not_loaded", "3")


def test_other_failures_of_the_first_model_are_its_answer_not_a_fallback() -> None:
    inference = RoutedInference()
    pipeline = routed_pipeline(inference, canary_route(0, fallback=True))

    def fail(model: str) -> None:
        raise InferenceError("inference_failed", f"{model}: bad input")

    inference.on_generate = fail
    out = published(pipeline, record({**example("medical"), "event_id": "e1"}))
    assert dict(out.headers)["dlq.reason"] == b"inference_failed"
    assert inference.calls == ["stable"]


def test_the_answer_is_cached_under_the_version_that_answered() -> None:
    inference = RoutedInference()
    pipeline = routed_pipeline(inference, Route(triton_model="stable", checkpoint="c"))
    inference.versions["stable"] = "1"  # remembered before Triton loaded version 2 ...
    inference.reported["stable"] = "2"  # ... which answers
    first = ask(pipeline, "e1")
    assert (first["model"]["version"], first["cache"]) == ("2", "miss")
    inference.versions["stable"] = "2"  # the version now known: the entry is found
    second = ask(pipeline, "e2")
    assert (second["model"]["version"], second["cache"]) == ("2", "hit")


def test_a_route_is_chosen_by_the_records_key() -> None:
    inference = RoutedInference()
    pipeline = routed_pipeline(inference, canary_route(50))
    keys = [f"vehicle-{i}".encode() for i in range(40)]
    for key in keys:
        value = {**example("medical"), "event_id": f"e-{key.decode()}"}
        want = first_model(canary_route(50), key)
        model, _ = pipeline.route_of(replace(record(value), key=key))
        assert model == want
        answer = ask(pipeline, f"e-{key.decode()}", key)
        assert answer["model"]["triton_model"] == want
    assert {"stable", "candidate"} <= set(inference.calls)


def test_resolve_route_reads_any_mapping() -> None:
    routes = {"medical/vqa": Route(triton_model="m", checkpoint="c")}
    assert resolve_route(routes, "medical", "vqa", None)[0] == "medical/vqa"


def test_models_routes_says_when_triton_cannot_be_asked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        url = f"127.0.0.1:{probe.getsockname()[1]}"
    routes = {KEY: canary_route(5, fallback=True).model_dump()}
    monkeypatch.setenv("POCKETVL_ROUTING__ROUTES", json.dumps(routes))
    monkeypatch.setenv("POCKETVL_TRITON__URL", url)
    assert main(["models", "routes"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "ckpt" in line]
    assert [line.split()[:4] for line in lines] == [
        [KEY, "primary", "95%", "stable"],
        ["canary", "5%", "candidate", "candidate-ckpt"],
        ["fallback", "-", "spare", "spare-ckpt"],
    ]
    assert all(line.endswith(f"unknown (Triton unreachable at {url})") for line in lines)
