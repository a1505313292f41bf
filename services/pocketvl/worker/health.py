"""Liveness and readiness of a worker, as ``/livez`` and ``/readyz`` report them.

- Live: the poll loop has come round within ``ops.live_stall_s``. A worker that is waiting
  out a Triton outage is live (its loop keeps polling); one whose loop is stuck is not, and
  a restart is the cure.
- Ready: the loop runs, the group gave it partitions, every Triton model its routes send
  records to first (routes' own models and canaries, as reloaded; not fallbacks) is ready,
  and Redis answers (or, by ``ops.redis_down="degraded"``, is reported degraded while the
  worker answers without its cache). Not ready during a Triton outage: the worker holds
  its requests back then (retrying, never dead-lettering them), and a rollout or an alert
  should see it.

``ReadinessProbe`` asks Triton and Redis from its own thread, every ``ops.probe_interval_s``,
so a probe request never waits on a slow server.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Report:
    checks: tuple[Check, ...]
    degraded: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def as_json(self) -> dict[str, object]:
        return {
            "status": "ok" if self.ok else "failing",
            "degraded": list(self.degraded),
            "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in self.checks},
        }


def liveness(seconds_since_loop: float | None, stall_s: float) -> Report:
    if seconds_since_loop is None:
        return Report((Check("loop", False, "the poll loop has not started"),))
    ok = seconds_since_loop <= stall_s
    detail = f"last round {seconds_since_loop:.1f} s ago (stuck after {stall_s:.0f} s)"
    return Report((Check("loop", ok, detail),))


@dataclass(frozen=True)
class Probed:
    """What the probe thread saw last."""

    models: dict[str, bool] = field(default_factory=dict)  # Triton model -> ready
    redis: bool | None = None  # None: not asked yet
    at: float | None = None  # time.monotonic() of the last round


def readiness(
    running: bool,
    assigned: int,
    probed: Probed,
    redis_down: Literal["degraded", "unready"] = "degraded",
) -> Report:
    checks = [
        Check("loop", running, "polling" if running else "not running"),
        Check("partitions", assigned > 0, f"{assigned} assigned"),
    ]
    if probed.at is None:
        checks.append(Check("triton", False, "not checked yet"))
    else:
        down = sorted(model for model, ready in probed.models.items() if not ready)
        detail = f"not ready: {', '.join(down)}" if down else f"{len(probed.models)} ready"
        checks.append(Check("triton", not down, detail))
    degraded: tuple[str, ...] = ()
    if probed.redis is False:
        if redis_down == "unready":
            checks.append(Check("redis", False, "unreachable"))
        else:
            checks.append(Check("redis", True, "unreachable: answering without the cache"))
            degraded = ("redis",)
    else:
        checks.append(Check("redis", probed.redis is True, "reachable"))
    return Report(tuple(checks), degraded)


class ReadinessProbe:
    """Asks, every ``interval_s``, whether each model is ready and Redis reachable."""

    def __init__(
        self,
        models: Iterable[str] | Callable[[], Iterable[str]],
        model_ready: Callable[[str], bool],
        redis_reachable: Callable[[], bool],
        interval_s: float,
    ) -> None:
        # A callable is asked every round: the routes, and so the models, can be reloaded.
        self._models = models
        self.model_ready = model_ready
        self.redis_reachable = redis_reachable
        self.interval_s = interval_s
        self.last = Probed()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pocketvl-probe", daemon=True)

    def start(self) -> ReadinessProbe:
        self._thread.start()
        return self

    @property
    def models(self) -> list[str]:
        names = self._models() if callable(self._models) else self._models
        return sorted(set(names))

    def probe_once(self) -> Probed:
        models = {model: _safely(partial(self.model_ready, model)) for model in self.models}
        self.last = Probed(models, _safely(self.redis_reachable), time.monotonic())
        return self.last

    def _run(self) -> None:
        while not self._stop.is_set():
            self.probe_once()
            self._stop.wait(self.interval_s)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


def _safely(check: Callable[[], bool]) -> bool:
    try:
        return bool(check())
    except Exception:  # a probe never takes the worker down: it reads "not ready"
        log.exception("a readiness check failed")
        return False
