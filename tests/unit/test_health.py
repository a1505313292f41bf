"""What /livez and /readyz say, from the loop's state and the probe's last look."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from pocketvl.adapters.ops_http import OpsServer
from pocketvl.worker.health import Probed, ReadinessProbe, liveness, readiness

ALL_READY = Probed({"m1": True, "m2": True}, True, 1.0)


def test_live_while_the_loop_comes_round_and_not_once_it_is_stuck() -> None:
    assert liveness(0.2, stall_s=60).ok
    stuck = liveness(61.0, stall_s=60)
    assert not stuck.ok and "61.0 s ago" in stuck.checks[0].detail
    assert not liveness(None, stall_s=60).ok  # not started yet


def test_ready_only_with_partitions_models_and_the_loop_running() -> None:
    assert readiness(True, 3, ALL_READY).ok
    assert not readiness(False, 3, ALL_READY).ok  # draining after SIGTERM
    assert not readiness(True, 0, ALL_READY).ok  # no partitions from the group (yet)
    assert not readiness(True, 3, Probed()).ok  # Triton not asked yet
    outage = readiness(True, 3, Probed({"m1": True, "m2": False}, True, 1.0))
    assert not outage.ok
    triton = next(check for check in outage.checks if check.name == "triton")
    assert (triton.ok, triton.detail) == (False, "not ready: m2")


def test_redis_down_is_degraded_or_unready_by_policy() -> None:
    down = Probed({"m1": True}, False, 1.0)
    degraded = readiness(True, 3, down, redis_down="degraded")
    assert degraded.ok and degraded.degraded == ("redis",)
    assert degraded.as_json()["status"] == "ok"
    assert not readiness(True, 3, down, redis_down="unready").ok


def test_a_probe_that_raises_reads_not_ready() -> None:
    def broken(model: str) -> bool:
        raise RuntimeError("bug")

    probe = ReadinessProbe(["m1", "m1", "m2"], broken, lambda: True, interval_s=60)
    seen = probe.probe_once()
    assert seen.models == {"m1": False, "m2": False} and seen.redis is True


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_the_operations_port_answers_200_or_503_with_the_checks() -> None:
    state = {"ready": True}
    server = OpsServer(
        "127.0.0.1",
        0,
        live=lambda: liveness(0.1, 60),
        ready=lambda: readiness(state["ready"], 2, ALL_READY),
        metrics=lambda: b"# metrics\n",
    ).start()
    try:
        status, body = _get(server.port, "/readyz")
        assert status == 200 and json.loads(body)["checks"]["partitions"]["detail"] == "2 assigned"
        state["ready"] = False
        status, body = _get(server.port, "/readyz")
        assert status == 503 and json.loads(body)["status"] == "failing"
        assert _get(server.port, "/livez")[0] == 200
        assert _get(server.port, "/metrics") == (200, b"# metrics\n")
        assert _get(server.port, "/nope")[0] == 404
    finally:
        server.close()
