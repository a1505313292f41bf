"""Routes reloaded from ``routing.routes_file``: taken whole or refused whole, watched, and
never under a record that was received on the routes before."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from pocketvl.settings import Route, RoutingSettings, routes_from_json
from pocketvl.worker.envelope import InboundRecord
from pocketvl.worker.health import ReadinessProbe
from pocketvl.worker.loop import Worker
from pocketvl.worker.route_book import RouteBook, RouteTable
from tests.support.examples import example
from tests.support.fakes import InMemorySink, InMemorySource
from tests.unit.test_routing import RoutedInference, routed_pipeline

TOPIC = "pocketvl.medical.requests"


def routes_to(model: str, **extra: Any) -> dict[str, Any]:
    return {"medical/choice": {"triton_model": model, "checkpoint": f"{model}-ckpt", **extra}}


def write(path: Path, routes: object) -> None:
    """Written as operators and ConfigMaps do: a new file renamed over the old one."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(routes if isinstance(routes, str) else json.dumps(routes))
    os.replace(tmp, path)


def book_on(path: Path, routes: object, **kwargs: Any) -> RouteBook:
    write(path, routes)
    return RouteBook(RoutingSettings(routes_file=path, watch_interval_s=0.05), **kwargs)


def model_of(table: RouteTable) -> str:
    return table.routes["medical/choice"].triton_model


def test_the_routes_file_replaces_the_routes_at_start(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    write(path, routes_to("a"))
    routing = RoutingSettings(routes_file=path)
    assert list(routing.routes) == ["medical/choice"]
    write(path, "{not json")
    with pytest.raises(ValueError, match="not JSON"):
        RoutingSettings(routes_file=path)  # at start a bad file stops the worker


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("{not json", "not JSON"),
        ("[]", "JSON object"),
        (json.dumps({"astro/vqa": {"triton_model": "m", "checkpoint": "c"}}), "astro"),
        (json.dumps({"medical/choice": {"triton_model": "m"}}), "checkpoint: Field required"),
        (json.dumps(routes_to("m", canary={"triton_model": "n", "checkpoint": "c"})), "percent"),
        (json.dumps(routes_to("m", max_tiles=0)), "max_tiles"),
        (json.dumps(routes_to("m", colour="red")), "colour"),
    ],
)
def test_a_bad_routes_file_is_refused_saying_why(text: str, said: str) -> None:
    with pytest.raises(ValueError, match=said):
        routes_from_json(text)


def test_a_reload_takes_a_good_file_and_refuses_a_bad_one_whole(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "routes.json"
    book = book_on(path, routes_to("a"))
    first = book.current
    write(path, routes_to("b"))
    assert book.reload()
    assert (model_of(book.current), book.current.generation) == ("b", 2)
    assert model_of(first) == "a"  # a table once published never changes
    good = book.current
    # The first route is fine, the second is not: nothing of the file is taken.
    write(path, {**routes_to("c"), "medical/vqa": {"triton_model": "d"}})
    with caplog.at_level(logging.ERROR):
        assert not book.reload()
    assert book.current is good and book.refused == 1
    assert "routes reload refused, keeping the routes in use" in caplog.text
    path.unlink()
    assert not book.reload() and book.current is good


def test_a_change_is_seen_by_content_not_only_by_mtime(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    book = book_on(path, routes_to("a"))
    assert not book.changed()
    stat = path.stat()
    write(path, routes_to("b"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # a copy that kept the mtime
    assert book.changed()
    write(path, routes_to("a"))  # rewritten with the same routes: nothing to do
    assert not book.changed()


def test_a_configmap_update_is_seen(tmp_path: Path) -> None:
    """Kubernetes mounts routes.json -> ..data/routes.json and swaps the ..data symlink."""
    for version, model in (("v1", "a"), ("v2", "b")):
        (tmp_path / version).mkdir()
        (tmp_path / version / "routes.json").write_text(json.dumps(routes_to(model)))
    (tmp_path / "..data").symlink_to("v1")
    path = tmp_path / "routes.json"
    path.symlink_to("..data/routes.json")
    book = RouteBook(RoutingSettings(routes_file=path))
    assert not book.changed()
    (tmp_path / "..data_tmp").symlink_to("v2")
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    assert book.changed() and book.reload()
    assert model_of(book.current) == "b"


def test_the_watcher_reloads_a_changed_file_and_on_request(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    seen: list[str] = []
    changed = threading.Event()

    def on_change(table: RouteTable) -> None:
        seen.append(model_of(table))
        changed.set()

    book = book_on(path, routes_to("a"), on_change=on_change).watch()
    try:
        write(path, routes_to("b"))
        assert changed.wait(10), "the watcher did not pick up the change"
        assert model_of(book.current) == "b"
        # SIGHUP: a reload asked for, though the watcher's stat would not have noticed yet.
        changed.clear()
        book.interval_s = 3600.0
        stat = path.stat()
        write(path, routes_to("c"))
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        book.request_reload()
        assert changed.wait(10), "a requested reload did not happen"
        assert seen == ["b", "c"]
    finally:
        book.close()


def test_readiness_follows_the_routes(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    canary = {"triton_model": "a2", "checkpoint": "x", "percent": 5}
    book = book_on(path, routes_to("a", canary=canary))
    probe = ReadinessProbe(lambda: book.current.models, lambda m: True, lambda: True, 60)
    assert set(probe.probe_once().models) == {"a", "a2"}
    write(path, routes_to("b", fallback={"triton_model": "spare", "checkpoint": "s"}))
    book.reload()
    assert set(probe.probe_once().models) == {"b"}


class ReloadingSource(InMemorySource):
    """The second batch only once the routes were reloaded (mid-way through the first)."""

    def __init__(self, first: list[InboundRecord], second: list[InboundRecord]) -> None:
        super().__init__([first])
        self.second = second
        self.reloaded = threading.Event()

    def poll(self, timeout_s: float) -> list[InboundRecord]:
        if not self.batches and self.reloaded.is_set() and self.second:
            self.batches.append(self.second)
            self.second = []
        return super().poll(timeout_s)


def inbound(offset: int) -> InboundRecord:
    value = {
        **example("medical"),
        "event_id": f"e{offset}",
        "task": {**example("medical")["task"], "question": f"q{offset}"},
    }
    return InboundRecord(TOPIC, 0, offset, f"key-{offset}".encode(), json.dumps(value).encode())


def test_records_received_before_a_reload_finish_on_the_old_routes(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    book = book_on(path, routes_to("a"))
    inference = RoutedInference()
    inference.capacities = {"a": 1, "b": 1}  # one at a time: the rest of a batch waits
    pipeline = routed_pipeline(inference, Route(triton_model="a", checkpoint="a-ckpt"))
    pipeline.routes = book
    source = ReloadingSource([inbound(i) for i in range(3)], [inbound(i) for i in range(3, 5)])

    def reload_once(model: str) -> None:
        if not source.reloaded.is_set():  # the first record is in Triton: reload now
            write(path, routes_to("b"))
            assert book.reload()
            source.reloaded.set()

    inference.on_generate = reload_once
    sink = InMemorySink()
    Worker(pipeline, source, sink).run(max_records=5, idle_timeout_s=5)
    assert sorted(inference.calls) == ["a", "a", "a", "b", "b"]
    answers = [json.loads(r.value) for r in sink.acked if r.topic.endswith("answers")]
    served = {a["event_id"]: a["model"]["checkpoint"] for a in answers}
    assert served == {
        "e0": "a-ckpt",
        "e1": "a-ckpt",
        "e2": "a-ckpt",
        "e3": "b-ckpt",
        "e4": "b-ckpt",
    }


def test_the_model_budget_follows_a_reload(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    book = book_on(path, routes_to("a"))
    inference = RoutedInference()
    inference.capacities = {"a": 4, "b": 1}
    pipeline = routed_pipeline(inference, Route(triton_model="a", checkpoint="a-ckpt"))
    pipeline.routes = book
    write(path, routes_to("b"))
    assert book.reload()
    lock, active, most = threading.Lock(), [0], [0]
    another = threading.Event()

    def overlap(model: str) -> None:
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
            first = len(inference.calls) == 1
            if not first:
                another.set()
        if first:  # holds Triton: a record scheduled under "a"'s budget (4) would join it
            another.wait(1.0)
        with lock:
            active[0] -= 1

    inference.on_generate = overlap
    source = InMemorySource([[inbound(i) for i in range(4)]])
    Worker(pipeline, source, InMemorySink()).run(max_records=4, idle_timeout_s=5)
    assert inference.calls == ["b"] * 4
    assert most[0] == 1  # "b"'s capacity in Triton, whatever worker.max_in_flight allows


def test_a_reload_the_production_check_refuses_keeps_the_routes_in_use(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from pocketvl.safe_defaults import route_problems

    book = book_on(tmp_path / "routes.json", routes_to("mini_a"), check=route_problems)
    write(book.path or tmp_path, routes_to("internvl2_tiny_qwen2"))
    with caplog.at_level(logging.ERROR):
        assert book.reload() is False
    assert model_of(book.current) == "mini_a" and book.refused == 1
    assert "production mode" in caplog.text and "internvl2_tiny_qwen2" in caplog.text
    write(book.path or tmp_path, routes_to("mini_b"))
    assert book.reload() is True and model_of(book.current) == "mini_b"
