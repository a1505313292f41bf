"""Routing against the real stack: a fallback when Triton has a model not loaded, routes
reloaded in a running ``pocketvl worker`` (file change and SIGHUP), a new model version
noticed without a restart, and ``pocketvl models routes``.

Triton serves copies of the ``echo`` stand-in (it answers with the question, and loads in a
second) from a model repository of this module's own, in explicit model-control mode, so a
test can load, unload and add versions.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tritonclient.grpc as grpcclient

from pocketvl.adapters.kafka_broker import publish, read_records
from pocketvl.adapters.triton_client import TritonInference
from pocketvl.devstack.stack import LocalStack, StackState
from pocketvl.service import build_pipeline
from pocketvl.settings import RoutingSettings, Settings, as_environment
from pocketvl.worker.envelope import InboundRecord, request_record, topic
from pocketvl.worker.pipeline import Pipeline
from tests.conftest import REPO
from tests.support.examples import example
from tests.support.stack_settings import stack_settings

pytestmark = pytest.mark.integration
MODELS = ("echo_a", "echo_b")
ROUTE = "medical/vqa"


def echo_copy(repository: Path, name: str) -> None:
    shutil.copytree(REPO / "bench" / "model_repository" / "echo", repository / name)
    config = repository / name / "config.pbtxt"
    config.write_text(config.read_text().replace('name: "echo"', f'name: "{name}"'))


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("routing-models")
    for name in MODELS:
        echo_copy(root, name)
    return root


@pytest.fixture(scope="module")
def echo_stack(tmp_path_factory: pytest.TempPathFactory, repository: Path) -> Iterator[StackState]:
    run_dir = tmp_path_factory.mktemp("routing-stack")
    checkpoints = tmp_path_factory.mktemp("no-checkpoints")  # echo reads none
    with LocalStack(run_dir, repository, checkpoints, MODELS) as state:
        yield state


@pytest.fixture
def triton(echo_stack: StackState) -> Iterator[grpcclient.InferenceServerClient]:
    client = grpcclient.InferenceServerClient(echo_stack.triton_url)
    for name in MODELS:  # every test starts with both loaded
        client.load_model(name)
    yield client
    client.close()


def routes_to(model: str, **extra: Any) -> dict[str, Any]:
    return {ROUTE: {"triton_model": model, "checkpoint": f"{model}-ckpt", **extra}}


def settings_on(state: StackState, routes: dict[str, Any], **routing: Any) -> Settings:
    settings = stack_settings(state, "r")
    settings.routing = RoutingSettings.model_validate({"routes": routes, **routing})
    return settings


def vqa(event_id: str, question: str) -> dict[str, Any]:
    value = example("medical.vqa")
    return {**value, "event_id": event_id, "task": {**value["task"], "question": question}}


def answer_of(pipeline: Pipeline, event_id: str, question: str) -> dict[str, Any]:
    requests = topic(pipeline.settings.kafka.topic_prefix, "medical", "requests")
    value = json.dumps(vqa(event_id, question)).encode()
    out = pipeline.process(InboundRecord(requests, 0, 0, b"study-1", value))
    assert out is not None and out.topic.endswith("answers"), out and dict(out.headers)
    answer: dict[str, Any] = json.loads(out.value)
    return answer


def test_a_model_not_loaded_is_answered_by_the_fallback(
    echo_stack: StackState, triton: grpcclient.InferenceServerClient
) -> None:
    routes = routes_to("echo_b", fallback={"triton_model": "echo_a", "checkpoint": "a-ckpt"})
    pipeline = build_pipeline(settings_on(echo_stack, routes))
    triton.unload_model("echo_b")
    first = answer_of(pipeline, "fb-1", "which organ?")
    assert first["model"] == {
        "checkpoint": "a-ckpt",
        "triton_model": "echo_a",
        "version": "1",
        "served_by": "fallback",
    }
    assert first["cache"] == "miss"
    # Loaded again: the same content goes to it, and is not served from the fallback's entry.
    triton.load_model("echo_b")
    second = answer_of(pipeline, "fb-2", "which organ?")
    assert (second["model"]["triton_model"], second["model"]["served_by"]) == ("echo_b", "primary")
    assert second["cache"] == "miss"


def test_a_new_model_version_is_noticed_without_a_restart(
    echo_stack: StackState,
    triton: grpcclient.InferenceServerClient,
    repository: Path,
) -> None:
    settings = settings_on(echo_stack, routes_to("echo_a"))
    pipeline = build_pipeline(settings)
    now = [0.0]
    pipeline.inference = TritonInference(settings.triton, version_ttl_s=30, clock=lambda: now[0])
    try:
        before = answer_of(pipeline, "v-1", "first question")
        assert (before["model"]["version"], before["cache"]) == ("1", "miss")
        assert answer_of(pipeline, "v-2", "first question")["cache"] == "hit"

        shutil.copytree(repository / "echo_a" / "1", repository / "echo_a" / "2")
        triton.load_model("echo_a")  # Triton now serves version 2 only (latest: 1)
        # New content: Triton answers with version 2, and says so; that version is
        # remembered at once, so the answer is filed under version 2's key ...
        fresh = answer_of(pipeline, "v-3", "second question")
        assert (fresh["model"]["version"], fresh["cache"]) == ("2", "miss")
        assert answer_of(pipeline, "v-4", "second question")["model"]["version"] == "2"
        assert answer_of(pipeline, "v-4b", "second question")["cache"] == "hit"
        # ... and content cached under version 1 is looked up under version 2: not found.
        again = answer_of(pipeline, "v-5", "first question")
        assert (again["model"]["version"], again["cache"]) == ("2", "miss")
    finally:
        shutil.rmtree(repository / "echo_a" / "2")
        triton.load_model("echo_a")
        pipeline.inference.close()


def test_cache_hits_alone_notice_a_new_version_within_the_ttl(
    echo_stack: StackState,
    triton: grpcclient.InferenceServerClient,
    repository: Path,
) -> None:
    settings = settings_on(echo_stack, routes_to("echo_b"))
    pipeline = build_pipeline(settings)
    now = [0.0]
    pipeline.inference = TritonInference(settings.triton, version_ttl_s=30, clock=lambda: now[0])
    try:
        assert answer_of(pipeline, "t-1", "cached question")["model"]["version"] == "1"
        shutil.copytree(repository / "echo_b" / "1", repository / "echo_b" / "2")
        triton.load_model("echo_b")
        # Within the TTL a hit still names version 1 (no call reached Triton to say) ...
        assert answer_of(pipeline, "t-2", "cached question")["model"]["version"] == "1"
        now[0] += 31  # ... and once it has passed, the version is asked again.
        after = answer_of(pipeline, "t-3", "cached question")
        assert (after["model"]["version"], after["cache"]) == ("2", "miss")
    finally:
        shutil.rmtree(repository / "echo_b" / "2")
        triton.load_model("echo_b")
        pipeline.inference.close()


def start_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **as_environment(settings)}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pocketvl.cli.main", "worker"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_for_log(log: Path, text: str, worker: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in log.read_text(errors="replace"):
        assert worker.poll() is None, f"the worker exited: {log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, f"{text!r} not logged: {log.read_text()[-2000:]}"
        time.sleep(0.05)  # polling an observable: the worker's own log line


def served_models(settings: Settings, count: int) -> dict[str, str]:
    answers = topic(settings.kafka.topic_prefix, "medical", "answers")
    records = read_records(settings.kafka, [answers], count, timeout_s=60)
    values = [json.loads(r.value) for r in records]
    return {v["event_id"]: v["model"]["triton_model"] for v in values}


def send(settings: Settings, event_id: str) -> None:
    record = request_record(
        settings.kafka.topic_prefix, vqa(event_id, event_id), b"study-9", "/tests/routing"
    )
    publish(settings.kafka, [record])


def write(path: Path, routes: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(routes if isinstance(routes, str) else json.dumps(routes))
    os.replace(tmp, path)


def run_worker(
    echo_stack: StackState, tmp_path: Path, watch_interval_s: float
) -> Iterator[tuple[Settings, Path, Path, subprocess.Popen[bytes]]]:
    routes_file = tmp_path / "routes.json"
    write(routes_file, routes_to("echo_a"))
    settings = settings_on(
        echo_stack, {}, routes_file=routes_file, watch_interval_s=watch_interval_s
    )
    log = tmp_path / "worker.log"
    worker = start_worker(settings, log)
    try:
        yield settings, routes_file, log, worker
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


@pytest.fixture
def watching_worker(
    echo_stack: StackState, tmp_path: Path, triton: grpcclient.InferenceServerClient
) -> Iterator[tuple[Settings, Path, Path, subprocess.Popen[bytes]]]:
    yield from run_worker(echo_stack, tmp_path, watch_interval_s=0.2)


@pytest.fixture
def hup_worker(
    echo_stack: StackState, tmp_path: Path, triton: grpcclient.InferenceServerClient
) -> Iterator[tuple[Settings, Path, Path, subprocess.Popen[bytes]]]:
    yield from run_worker(echo_stack, tmp_path, watch_interval_s=3600)  # SIGHUP only


def test_a_running_worker_takes_a_changed_routes_file(
    watching_worker: tuple[Settings, Path, Path, subprocess.Popen[bytes]],
) -> None:
    settings, routes_file, log, worker = watching_worker
    send(settings, "w-1")
    assert served_models(settings, 1) == {"w-1": "echo_a"}
    write(routes_file, routes_to("echo_b"))
    wait_for_log(log, "generation 2", worker, 30)
    send(settings, "w-2")
    assert served_models(settings, 2) == {"w-1": "echo_a", "w-2": "echo_b"}


def test_a_running_worker_reloads_on_sighup_and_keeps_its_routes_on_a_bad_file(
    hup_worker: tuple[Settings, Path, Path, subprocess.Popen[bytes]],
) -> None:
    settings, routes_file, log, worker = hup_worker
    send(settings, "h-1")
    assert served_models(settings, 1) == {"h-1": "echo_a"}
    write(routes_file, routes_to("echo_b"))
    worker.send_signal(signal.SIGHUP)
    wait_for_log(log, "generation 2", worker, 30)
    send(settings, "h-2")
    assert served_models(settings, 2)["h-2"] == "echo_b"
    write(routes_file, {ROUTE: {"triton_model": "echo_a"}})  # no checkpoint: refused whole
    worker.send_signal(signal.SIGHUP)
    wait_for_log(log, "routes reload refused", worker, 30)
    send(settings, "h-3")
    assert served_models(settings, 3)["h-3"] == "echo_b"
    assert worker.poll() is None


def test_models_routes_shows_each_model_with_its_readiness(
    echo_stack: StackState, triton: grpcclient.InferenceServerClient
) -> None:
    routes = routes_to(
        "echo_a",
        canary={"triton_model": "echo_b", "checkpoint": "b-ckpt", "percent": 10},
        fallback={"triton_model": "echo_missing", "checkpoint": "m-ckpt"},
    )
    settings = settings_on(echo_stack, routes)
    triton.unload_model("echo_b")
    out = pocketvl_models_routes(settings)
    rows = {"primary" if line.startswith(ROUTE) else line.split()[0]: line for line in out}
    assert rows["primary"].split()[2:5] == ["90%", "echo_a", "echo_a-ckpt"]
    assert rows["primary"].endswith("ready") and "NOT" not in rows["primary"]
    assert rows["canary"].split()[1:4] == ["10%", "echo_b", "b-ckpt"]
    assert rows["canary"].endswith("NOT READY")
    assert rows["fallback"].endswith("NOT READY")


def pocketvl_models_routes(settings: Settings) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "pocketvl.cli.main", "models", "routes"],
        cwd=REPO,
        env={**os.environ, **as_environment(settings)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [line for line in done.stdout.splitlines() if ROUTE in line or line.startswith(" ")]
