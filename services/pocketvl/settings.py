"""Service settings, built once at start-up and passed down.

Every field can be set from the environment: ``POCKETVL_<SECTION>__<FIELD>``, for example
``POCKETVL_KAFKA__BOOTSTRAP_SERVERS=broker:9092`` or ``POCKETVL_REDIS__URL=redis://cache:6379/0``.
Routes are a JSON object: ``POCKETVL_ROUTING__ROUTES='{"driving/drivelm": {...}}'``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pocketvl.domains.registry import REGISTRY

TOPIC_PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9._-]+$")
TINY_MODEL = "internvl2_tiny_qwen2"
TINY_CHECKPOINT = "tiny-internvl2-qwen2"


class Section(BaseModel):
    """A settings section: a misspelt field is an error, and no number may be NaN or inf."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class KafkaSettings(Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = "pocketvl"
    group_id: str = "pocketvl-worker"
    # Static membership: a stable id per replica, so a restart within the session timeout
    # keeps its partitions instead of rebalancing the whole group. None: a dynamic member.
    group_instance_id: str | None = Field(default=None, min_length=1, max_length=249)
    client_id: str = "pocketvl"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    bootstrap_timeout_ms: int = Field(default=10_000, ge=100)
    # The loop polls continuously whatever inference takes, so the poll interval only
    # bounds a stuck loop; a short session timeout moves a dead worker's partitions quickly.
    max_poll_records: int = Field(default=4, ge=1)
    max_poll_interval_ms: int = Field(default=900_000, ge=1_000)
    session_timeout_ms: int = Field(default=10_000, ge=1_000)
    heartbeat_interval_ms: int = Field(default=1_000, ge=100)
    max_message_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)

    @field_validator("topic_prefix")
    @classmethod
    def _valid_prefix(cls, value: str) -> str:
        if not TOPIC_PREFIX_PATTERN.match(value):
            raise ValueError("topic_prefix may only contain letters, digits, '.', '_' and '-'")
        return value


class RedisSettings(Section):
    url: str = "redis://127.0.0.1:6379/0"
    ttl_seconds: int = Field(default=7 * 24 * 3600, ge=1)
    socket_timeout_s: float = Field(default=2.0, gt=0)
    key_prefix: str = "pocketvl"


class TritonSettings(Section):
    url: str = "127.0.0.1:8001"
    timeout_s: float = Field(default=60.0, gt=0)
    # Triton down, overloaded or not ready is retried with jittered backoff for as long as
    # the outage lasts, up to outage_budget_s (and max_attempts tries, when set); only then
    # is a valid request dead-lettered (model_unavailable).
    max_attempts: int | None = Field(default=None, ge=1)
    outage_budget_s: float = Field(default=900.0, gt=0)
    backoff_initial_s: float = Field(default=0.2, ge=0)
    backoff_max_s: float = Field(default=5.0, ge=0)
    # Images travel as raw RGB: one image at the default pixel cap (40 MP) is 120 MB, and it
    # must fit in one call.
    max_grpc_message_bytes: int = Field(default=160 * 1024 * 1024, ge=4 * 1024 * 1024)


class Route(Section):
    """Where one (domain, task[, size]) goes: a Triton model and the checkpoint it serves."""

    triton_model: str
    checkpoint: str
    max_tiles: int = Field(default=12, ge=1, le=40)
    max_new_tokens: int = Field(default=64, ge=1, le=4096)


def _tiny_routes() -> dict[str, Route]:
    tiny = Route(triton_model=TINY_MODEL, checkpoint=TINY_CHECKPOINT, max_new_tokens=16)
    return {spec.key: tiny for spec in REGISTRY}


class RoutingSettings(Section):
    """Route keys are ``domain/task`` or ``domain/task/size`` (size: 1b, 2b, 4b)."""

    routes: dict[str, Route] = Field(default_factory=_tiny_routes)

    @field_validator("routes")
    @classmethod
    def _valid_keys(cls, routes: dict[str, Route]) -> dict[str, Route]:
        problems = REGISTRY.route_problems(routes)
        if problems:
            raise ValueError("; ".join(problems))
        return routes


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
                out[f"POCKETVL_{name.upper()}__{field_name.upper()}"] = _env_text(field_value)
        else:
            out[f"POCKETVL_{name.upper()}"] = _env_text(value)
    return out


def _env_text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)
