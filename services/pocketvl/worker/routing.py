"""Route a request to a Triton model: the most specific ``domain/task[/size]`` key wins.

A route may name a canary (a second model for a share of its traffic) and a fallback (for
when its model is not loaded). Which model a record goes to first is decided by its key
alone: a vehicle or a study sees one model for a given split, across records, restarts and
worker replicas, and raising the canary's share only moves more keys onto it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

from pocketvl.errors import InferenceUnavailable, RouteError
from pocketvl.settings import Route

T = TypeVar("T")
Role = Literal["primary", "canary", "fallback"]
BUCKETS = 10_000  # a canary's share is a whole number of these (percent in steps of 0.01)


@dataclass(frozen=True)
class Target:
    """One model a route may be served by, and the part it plays in the route."""

    triton_model: str
    checkpoint: str
    role: Role


def resolve_route(
    routes: Mapping[str, Route], domain: str, task: str, size: str | None
) -> tuple[str, Route]:
    """Return (route key, route). A requested size with no route of its own is an error:
    silently serving another size would hand the caller a different model than asked for."""
    key = f"{domain}/{task}/{size}" if size else f"{domain}/{task}"
    route = routes.get(key)
    if route is None:
        known = ", ".join(sorted(k for k in routes if k.startswith(f"{domain}/"))) or "none"
        raise RouteError("no_route", f"no route for {key}; routes for {domain}: {known}")
    return key, route


def sticky_key(record_key: bytes | None, event_id: str | None) -> bytes:
    """What a split is decided on: the Kafka key (a vehicle, a study); a record without
    one is split by its event id, so at least its redeliveries see the same model."""
    if record_key:
        return record_key
    return (event_id or "").encode()


def split_bucket(route_key: str, key: bytes) -> int:
    """A bucket in [0, BUCKETS) for ``key`` on this route: a hash, so the same on every
    replica and after restarts, and independent from one route to the next."""
    digest = hashlib.sha256(route_key.encode() + b"\0" + key).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def route_targets(route_key: str, route: Route, key: bytes) -> tuple[Target, ...]:
    """The models to try, in order: the one this key's split picks, then the route's own
    model (when the canary was picked), then the fallback. Only a model that is not loaded
    passes a request on to the next; any other failure is that model's answer."""
    primary = Target(route.triton_model, route.checkpoint, "primary")
    targets = [primary]
    canary = route.canary
    if canary is not None and split_bucket(route_key, key) < round(canary.percent * 100):
        targets.insert(0, Target(canary.triton_model, canary.checkpoint, "canary"))
    if route.fallback is not None:
        fallback = route.fallback
        targets.append(Target(fallback.triton_model, fallback.checkpoint, "fallback"))
    return tuple(targets)


def first_choice_models(routes: Iterable[Route]) -> list[str]:
    """Models some record goes to first (routes' own models and canaries): the ones a
    worker must have ready. Fallbacks are only there for when those are not."""
    models = set()
    for route in routes:
        models.add(route.triton_model)
        if route.canary is not None and route.canary.percent > 0:
            models.add(route.canary.triton_model)
    return sorted(models)


def all_models(route: Route) -> list[tuple[Role, str, str]]:
    """(role, Triton model, checkpoint) for every model ``route`` names."""
    named: list[tuple[Role, str, str]] = [("primary", route.triton_model, route.checkpoint)]
    if route.canary is not None:
        named.append(("canary", route.canary.triton_model, route.canary.checkpoint))
    if route.fallback is not None:
        named.append(("fallback", route.fallback.triton_model, route.fallback.checkpoint))
    return named


class NotLoaded(Exception):
    """A model that is not loaded, when the route has another to try: not a
    ``DeadLetterError``, so the retry loop hands it straight back instead of waiting."""

    def __init__(self, cause: InferenceUnavailable) -> None:
        super().__init__(str(cause))
        self.cause = cause


def passed_on_if_not_loaded(call: Callable[[], T]) -> Callable[[], T]:
    def guarded() -> T:
        try:
            return call()
        except InferenceUnavailable as exc:
            if exc.reason == "model_not_loaded":
                raise NotLoaded(exc) from exc
            raise

    return guarded


class EveryMinute:
    """Whether a message about ``subject`` is due: at most once a minute per subject."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def due(self, subject: str) -> bool:
        now = time.monotonic()
        if now - self._last.get(subject, -60.0) < 60.0:
            return False
        self._last[subject] = now
        return True


NOT_LOADED_LOG = EveryMinute()
