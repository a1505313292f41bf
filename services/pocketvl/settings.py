"""Service settings, built once at start-up and passed down.

Every field can be set from the environment: ``POCKETVL_<SECTION>__<FIELD>``, for example
``POCKETVL_KAFKA__BOOTSTRAP_SERVERS=broker:9092`` or ``POCKETVL_REDIS__URL=redis://cache:6379/0``.
Routes are a JSON object: ``POCKETVL_ROUTING__ROUTES='{"driving/drivelm": {...}}'``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pocketvl.domains.registry import REGISTRY
from pocketvl.transport_settings import KafkaSettings, RedisSettings, Section, TritonSettings

__all__ = [
    "TINY_CHECKPOINT",
    "TINY_MODEL",
    "ImageStoreSettings",
    "KafkaSettings",
    "LimitSettings",
    "OpsSettings",
    "RedisSettings",
    "Route",
    "RoutingSettings",
    "Section",
    "Settings",
    "TritonSettings",
    "WorkerSettings",
    "as_environment",
]
TINY_MODEL = "internvl2_tiny_qwen2"
TINY_CHECKPOINT = "tiny-internvl2-qwen2"


class RouteTarget(Section):
    """A Triton model and the checkpoint it serves."""

    triton_model: str = Field(min_length=1)
    checkpoint: str = Field(min_length=1)


class Canary(RouteTarget):
    """A second model that gets ``percent`` of a route's traffic, sticky by message key."""

    percent: float = Field(ge=0, le=100, description="share of keys, in steps of 0.01")


class Route(Section):
    """Where one (domain, task[, size]) goes: a Triton model and the checkpoint it serves,
    optionally a canary taking a sticky share of it, and a fallback for when the model
    (or the canary's and the primary's) is not loaded in Triton."""

    triton_model: str = Field(min_length=1)
    checkpoint: str = Field(min_length=1)
    max_tiles: int = Field(default=12, ge=1, le=40)
    max_new_tokens: int = Field(default=64, ge=1, le=4096)
    canary: Canary | None = None
    fallback: RouteTarget | None = None

    @model_validator(mode="after")
    def _distinct_models(self) -> Route:
        for name, other in (("canary", self.canary), ("fallback", self.fallback)):
            if other is not None and other.triton_model == self.triton_model:
                raise ValueError(f"the {name} must be another Triton model than the route's")
        return self


def _tiny_routes() -> dict[str, Route]:
    tiny = Route(triton_model=TINY_MODEL, checkpoint=TINY_CHECKPOINT, max_new_tokens=16)
    return {spec.key: tiny for spec in REGISTRY}


class RoutingSettings(Section):
    """Route keys are ``domain/task`` or ``domain/task/size`` (size: 1b, 2b, 4b)."""

    routes: dict[str, Route] = Field(default_factory=_tiny_routes)
    # A JSON object shaped like ``routes``; when set it replaces them, and a running worker
    # reads it again on SIGHUP and when it changes (looked at every watch_interval_s).
    routes_file: Path | None = None
    watch_interval_s: float = Field(default=2.0, gt=0)
    # A model's version is asked of Triton again after this long (an answer that reports a
    # newer version updates it at once): cache keys follow a model Triton reloaded.
    version_ttl_s: float = Field(default=30.0, gt=0)

    @field_validator("routes")
    @classmethod
    def _valid_keys(cls, routes: dict[str, Route]) -> dict[str, Route]:
        problems = REGISTRY.route_problems(routes)
        if problems:
            raise ValueError("; ".join(problems))
        return routes

    @model_validator(mode="after")
    def _routes_from_file(self) -> RoutingSettings:
        if self.routes_file is not None:
            self.routes = read_routes_file(self.routes_file)
        return self


def routes_from_json(text: str | bytes) -> dict[str, Route]:
    """The routes a routes file holds, checked as ``routing.routes`` is; ``ValueError``
    saying what is wrong otherwise (nothing half-read is ever returned)."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("must be a JSON object of route key -> route")
    try:
        return RoutingSettings.model_validate({"routes": data}).routes
    except ValidationError as exc:
        raise ValueError(_first_errors(exc)) from None


def read_routes_file(path: Path) -> dict[str, Route]:
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"routing.routes_file {path}: {exc.strerror or exc}") from None
    try:
        return routes_from_json(text)
    except ValueError as exc:
        raise ValueError(f"routing.routes_file {path}: {exc}") from None


def _first_errors(exc: ValidationError, limit: int = 3) -> str:
    parts = []
    for error in exc.errors()[:limit]:
        where = ".".join(str(p) for p in error["loc"][1:]) or "routes"
        parts.append(f"{where}: {error['msg']}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


class LimitSettings(Section):
    max_image_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    max_inline_image_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(default=40_000_000, ge=1024)
    max_images: int = Field(default=8, ge=1)
    # Request JSON nests 3 levels deep; anything far deeper is hostile.
    max_json_depth: int = Field(default=32, ge=4, le=1000)
    # Frames in the SOURCE (a video is decoded up to its last sampled frame): 1 min at 30 fps.
    max_frames: int = Field(default=1800, ge=1, description="video / multi-frame DICOM frames")


class ImageStoreSettings(Section):
    """Where claim-check references may point, and how fetching them is retried."""

    # Claim-check references: only file:// under these roots are read.
    file_roots: list[Path] = Field(default_factory=list)
    # ... https:// only from these hosts: exact, case-insensitive "host" or "host:port"
    # entries (IPv6 as "[::1]:8443"); no wildcards, so an IP literal must be listed itself.
    https_hosts: list[str] = Field(default_factory=list)
    # ... plain http:// only from these hosts: local mirrors and tests, never the internet.
    http_hosts: list[str] = Field(default_factory=list)
    # ... s3://bucket/key only for these buckets, signed (SigV4) with credentials from
    # botocore's default chain (env, shared files / AWS_PROFILE, web identity, IMDS).
    s3_buckets: list[str] = Field(default_factory=list)
    s3_endpoint: str | None = Field(
        default=None, description="http(s)://host[:port]; default https://s3.<region>.amazonaws.com"
    )
    s3_region: str = Field(default="us-east-1", pattern=r"^[a-z0-9-]+$")
    fetch_timeout_s: float = Field(
        default=10.0, gt=0, description="whole fetch, first to last byte"
    )
    ca_file: Path | None = Field(default=None, description="PEM CAs trusted on top of the system's")
    # A listed DNS name that resolves to loopback, link-local or private addresses is
    # refused unless it is named here (an in-cluster store such as "minio"): exact names.
    private_hosts: list[str] = Field(default_factory=list)
    # A store that is down or slow (5xx, 429, timeouts) is retried with jittered backoff.
    max_attempts: int = Field(default=3, ge=1)
    backoff_initial_s: float = Field(default=0.2, ge=0)
    backoff_max_s: float = Field(default=5.0, ge=0)

    @field_validator("private_hosts")
    @classmethod
    def _host_names(cls, hosts: list[str]) -> list[str]:
        for host in hosts:
            if not host or any(char in host for char in "/@*?#: "):
                raise ValueError(f"private host {host!r} must be a bare host name")
        return [host.lower() for host in hosts]

    @field_validator("https_hosts", "http_hosts")
    @classmethod
    def _exact_hosts(cls, hosts: list[str]) -> list[str]:
        for host in hosts:
            if not host or any(char in host for char in "/@*?# "):
                raise ValueError(
                    f"host entry {host!r} must be 'host' or 'host:port': "
                    "no scheme, path, credentials or wildcard"
                )
        return [host.lower() for host in hosts]

    @field_validator("s3_endpoint")
    @classmethod
    def _bare_endpoint(cls, endpoint: str | None) -> str | None:
        if endpoint is None:
            return None
        parts = urlsplit(endpoint)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or "@" in parts.netloc
            or parts.path not in ("", "/")
            or parts.query
        ):
            raise ValueError("s3_endpoint must be http(s)://host[:port], with no path or userinfo")
        return endpoint


class WorkerSettings(Section):
    """The concurrent core: how much work is in flight, and in what order."""

    # Requests being processed at once (decode, fetch, cache, Triton) by one worker process.
    # Size it to what Triton batches: the sum over routed models of max_batch_size x
    # instances is the most Triton runs at once; more only waits in Triton's queue.
    max_in_flight: int = Field(default=16, ge=1, le=1024)
    # ... and per Triton model, within max_in_flight. A model not named here gets what
    # Triton runs at once: its max_batch_size x instances, read from Triton's model config.
    model_in_flight: dict[str, int] = Field(default_factory=dict)
    # Records received but not yet started, per model; beyond it the partitions feeding that
    # model are paused (the loop keeps polling, so the group never sees the worker as stuck).
    max_buffered: int = Field(default=64, ge=1)
    # "key": same key in order, different keys in parallel; "partition": one at a time per
    # partition; "none": any order.
    ordering: Literal["key", "partition", "none"] = "key"
    # Decoded-image memory for all requests in flight together (MiB). A frame reserves what
    # it will cost from its header before it is decoded (~8 bytes per pixel for 8-bit RGB,
    # ~14 for 16-bit GeoTIFF/DICOM); one at the 40 MP cap needs ~320 MiB.
    decode_memory_mib: int = Field(default=1024, ge=64)
    shutdown_timeout_s: float = Field(default=30.0, gt=0)


class OpsSettings(Section):
    """The worker's operations port: ``/livez``, ``/readyz`` and ``/metrics`` (Prometheus)."""

    host: str = "0.0.0.0"  # probes and scrapes come from outside the pod
    port: int = Field(default=9464, ge=0, le=65535)  # 0: a free port (tests)
    enabled: bool = True
    # /livez fails when the poll loop has not come round for this long.
    live_stall_s: float = Field(default=60.0, gt=0)
    # How often Triton model readiness and Redis are checked for /readyz.
    probe_interval_s: float = Field(default=2.0, gt=0)
    # Redis down: "degraded" (ready: answers go out without cache) or "unready".
    redis_down: Literal["degraded", "unready"] = "degraded"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="POCKETVL_", env_nested_delimiter="__", extra="forbid"
    )

    # "production" refuses unsafe settings at start-up (pocketvl.safe_defaults): routes to
    # random-weight models, plaintext links off the loopback, incomplete credentials.
    # "dev" allows them: tests, the demo and `pocketvl worker --stack`.
    mode: Literal["production", "dev"] = "production"
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    triton: TritonSettings = Field(default_factory=TritonSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    image_store: ImageStoreSettings = Field(default_factory=ImageStoreSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    ops: OpsSettings = Field(default_factory=OpsSettings)
    cache_enabled: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.kafka.heartbeat_interval_ms * 3 > self.kafka.session_timeout_ms:
            raise ValueError(
                "kafka.heartbeat_interval_ms must be at most a third of kafka.session_timeout_ms"
            )
        if self.limits.max_inline_image_bytes > self.kafka.max_message_bytes:
            raise ValueError(
                "limits.max_inline_image_bytes cannot exceed kafka.max_message_bytes: "
                "lower the inline cap or use claim-check references"
            )
        return self


def as_environment(settings: Settings) -> dict[str, str]:
    """The ``POCKETVL_*`` variables that rebuild ``settings`` in another process (a worker
    the tests or ``pocketvl bench`` start): every field that differs from its default."""
    out: dict[str, str] = {}
    for name, value in settings.model_dump(mode="json", exclude_defaults=True).items():
        section = getattr(settings, name)
        if isinstance(section, Section):
            for field_name, field_value in value.items():
                secret = getattr(section, field_name)  # dumped as "**********"
                text = secret.get_secret_value() if isinstance(secret, SecretStr) else field_value
                out[f"POCKETVL_{name.upper()}__{field_name.upper()}"] = _env_text(text)
        else:
            out[f"POCKETVL_{name.upper()}"] = _env_text(value)
    return out


def _env_text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)
