"""The command line as a user runs it: subprocesses against the real stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pocketvl.adapters.kafka_broker import publish, read_records
from pocketvl.devstack.processes import free_ports, group_members
from pocketvl.devstack.stack import StackState
from pocketvl.settings import Settings, as_environment
from pocketvl.worker.envelope import InboundRecord, dlq_headers, dlq_record, topic
from tests.conftest import REPO
from tests.support.samples import satellite_tile

pytestmark = pytest.mark.integration


def pocketvl(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pocketvl.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        check=False,
    )


# The worker's base install has none of these (they are the `serving` and `devstack` extras):
# the worker is run with every one of them made unimportable.
SERVING_ONLY = ("torch", "transformers", "tokenizers", "safetensors", "sentencepiece", "pytriton")
_BLOCKED_LAUNCH = f"""
import sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {SERVING_ONLY!r}:
            raise ImportError("the worker imported " + name)
sys.meta_path.insert(0, Blocked())
from pocketvl.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_produce_worker_tail(settings: Settings, tmp_path: Path) -> None:
    env = as_environment(settings)
    image = tmp_path / "tile.png"
    image.write_bytes(satellite_tile(5))
    task = json.dumps({"type": "classify", "labels": ["forest", "river", "airport"]})
    produced = pocketvl(
        "produce",
        "--domain",
        "remote_sensing",
        "--image",
        str(image),
        "--task",
        task,
        "--key",
        "tile-5",
        "--event-id",
        "cli-1",
        env=env,
    )
    assert produced.returncode == 0, produced.stderr
    assert produced.stdout.strip() == "cli-1"

    worked = subprocess.run(
        [
            sys.executable,
            "-c",
            _BLOCKED_LAUNCH,
            "worker",
            "--max-records",
            "1",
            "--idle-timeout",
            "60",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, **env},
        check=False,
    )
    assert worked.returncode == 0, worked.stderr  # it never imported torch or transformers
    assert "processed 1 records, 0 to the DLQ" in worked.stdout

    tailed = pocketvl("tail", "--json", "--count", "1", "--timeout", "20", env=env)
    assert tailed.returncode == 0, tailed.stderr
    answer = json.loads(tailed.stdout.splitlines()[0])
    assert answer["event_id"] == "cli-1"
    assert answer["task"] == {"type": "classify", "labels": ["forest", "river", "airport"]}


def test_cli_errors_say_what_to_fix(tmp_path: Path) -> None:
    missing = pocketvl(
        "produce", "--domain", "medical", "--image", str(tmp_path / "x.png"), "--question", "Q"
    )
    assert missing.returncode == 2
    assert "no such file" in missing.stderr
    (tmp_path / "scan.bmp").write_bytes(b"BM")
    wrong = pocketvl(
        "produce", "--domain", "medical", "--image", str(tmp_path / "scan.bmp"), "--question", "Q"
    )
    assert wrong.returncode == 2
    assert ".png" in wrong.stderr and ".dcm" in wrong.stderr
    bad_env = pocketvl("schemas", "check", env={"POCKETVL_KAFKA__TOPIC_PREFIX": "bad prefix"})
    assert bad_env.returncode == 0  # schemas need no settings
    worker = pocketvl(
        "worker", "--max-records", "1", env={"POCKETVL_KAFKA__TOPIC_PREFIX": "bad prefix"}
    )
    assert worker.returncode == 2
    assert "topic_prefix" in worker.stderr
    no_broker = {
        "POCKETVL_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_ports(1)[0]}",
        "POCKETVL_KAFKA__BOOTSTRAP_TIMEOUT_MS": "1000",
    }
    image = tmp_path / "ok.png"
    image.write_bytes(satellite_tile(1))
    unreachable = pocketvl(
        "produce", "--domain", "medical", "--image", str(image), "--question", "Q", env=no_broker
    )
    assert unreachable.returncode == 2
    assert "no Kafka broker at 127.0.0.1:" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr
    no_stack = pocketvl("stack", "status", env={"POCKETVL_HOME": str(tmp_path)})
    assert no_stack.returncode == 2
    assert "pocketvl stack up" in no_stack.stderr


def test_stack_up_status_down(tmp_path: Path, checkpoint_root: Path) -> None:
    env = {"POCKETVL_HOME": str(tmp_path), "POCKETVL_CHECKPOINT_DIR": str(checkpoint_root)}
    up = pocketvl("stack", "up", env=env, timeout=240)
    assert up.returncode == 0, up.stderr
    assert "POCKETVL_TRITON__URL" in up.stdout
    try:
        state = StackState.load(tmp_path / "stack")
        assert set(state.services) == {"kafka", "redis", "triton"}
        status = pocketvl("stack", "status", env=env)
        assert status.returncode == 0
        assert status.stdout.count(" up ") == 3
        again = pocketvl("stack", "up", env=env)
        assert again.returncode == 2
        assert "already running" in again.stderr
        triton_pid = state.services["triton"].pid
        stubs = group_members(triton_pid)
        assert len(stubs) > 1, "tritonserver and its Python-backend stub"
        stopped = pocketvl("stack", "stop", "triton", env=env)
        assert stopped.returncode == 0, stopped.stderr
        assert group_members(triton_pid) == []  # the stubs went with it
        assert pocketvl("stack", "status", env=env).returncode == 1
        started = pocketvl("stack", "start", "triton", env=env, timeout=240)
        assert started.returncode == 0, started.stderr
        restarted = StackState.load(tmp_path / "stack").services["triton"]
        assert restarted.port == state.services["triton"].port
        assert pocketvl("stack", "status", env=env).returncode == 0
        state = StackState.load(tmp_path / "stack")
    finally:
        down = pocketvl("stack", "down", env=env)
    assert down.returncode == 0
    assert not (tmp_path / "stack" / "stack.json").exists()
    for record in state.services.values():
        assert (
            not Path(f"/proc/{record.pid}").exists()
            or Path(f"/proc/{record.pid}/cmdline").read_bytes() == b""
        )


def test_models_list_routes_and_repository(tmp_path: Path) -> None:
    from pocketvl.settings import RoutingSettings

    listed = pocketvl("models", "list")
    assert listed.returncode == 0
    assert sum(line.startswith("Mini-InternVL2-") for line in listed.stdout.splitlines()) == 12
    routes = pocketvl("models", "routes", "--size", "2b")
    assert routes.returncode == 0
    parsed = RoutingSettings.model_validate({"routes": json.loads(routes.stdout)})
    assert parsed.routes["medical/choice"].checkpoint == "Mini-InternVL2-2B-DA-Medical"
    written = pocketvl(
        "models", "repository", "--out", str(tmp_path), "--kind", "gpu", "--dtype", "bfloat16"
    )
    assert written.returncode == 0, written.stderr
    assert len([p for p in tmp_path.iterdir() if (p / "config.pbtxt").is_file()]) == 15
    assert "KIND_GPU" in (tmp_path / "mini_internvl2_1b_da_rs" / "config.pbtxt").read_text()
    missing = pocketvl("models", "verify")
    assert missing.returncode == 2
    assert "needs a checkpoint directory" in missing.stderr


def test_dlq_list_show_and_replay_on_the_real_broker(settings: Settings) -> None:
    prefix = settings.kafka.topic_prefix
    requests = topic(prefix, "medical", "requests")
    dead = []
    for offset, (reason, retryable, value) in enumerate(
        [("model_unavailable", True, b'{"event_id": "r-1"}'), ("invalid_json", False, b"{oops")]
    ):
        original = InboundRecord(requests, 0, offset, b"study-3", value, [("x-site", b"a")])
        headers = dlq_headers(original, "infer", reason, "it failed", 1, retryable)
        dead.append(dlq_record(original, topic(prefix, "medical", "dlq"), headers))
    publish(settings.kafka, dead)
    env = as_environment(settings)

    listed = pocketvl("dlq", "list", "--domain", "medical", "--since", "1h", env=env)
    assert listed.returncode == 0, listed.stderr
    assert (
        "| model_unavailable | yes |" in listed.stdout and "| invalid_json | no |" in listed.stdout
    )
    assert "2 DLQ records" in listed.stdout
    only = pocketvl("dlq", "list", "--reason", "invalid_json", env=env)
    assert "1 DLQ records" in only.stdout and "model_unavailable" not in only.stdout
    shown = pocketvl("dlq", "show", "--event-id", "r-1", env=env)
    assert shown.returncode == 0 and "dlq.original.topic" in shown.stdout, shown.stderr

    replayed = pocketvl("dlq", "replay", "--domain", "medical", env=env)
    assert replayed.returncode == 0, replayed.stderr
    assert "1 replayed, 1 refused" in replayed.stdout
    assert "invalid_json is not retryable" in replayed.stdout
    (again,) = read_records(settings.kafka, [requests], 1, 20)
    assert (again.key, again.value) == (b"study-3", b'{"event_id": "r-1"}')
    replay = dict(again.headers)
    assert replay["pocketvl.replay.attempt"] == b"1" and replay["x-site"] == b"a"
    assert replay["pocketvl.replay.of"] == f"{prefix}.medical.dlq:0@0".encode()
