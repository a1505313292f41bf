"""Settings of the three network links: Kafka, Redis and Triton (addresses, timeouts, TLS
and credentials). Re-exported by ``pocketvl.settings``; see it for how the environment maps.

Secrets are ``SecretStr`` (shown as ``**********`` in repr, str and JSON dumps) and each can
be given as a file instead (``<field>_file``, see ``pocketvl.secret_files``). Whether a
combination is safe for production (TLS off the loopback, credentials complete) is judged
at start-up by ``pocketvl.safe_defaults``, so tests and the demo may use plain local links.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from pocketvl.secret_files import resolve_secret_files

TOPIC_PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9._-]+$")


class Section(BaseModel):
    """A settings section: a misspelt field is an error, and no number may be NaN or inf.
    Each name in ``secret_fields`` may be given as ``<name>_file`` instead."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    secret_fields: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _secret_files(cls, data: Any) -> Any:
        return resolve_secret_files(data, cls.secret_fields)


class KafkaSettings(Section):
    secret_fields = ("ssl_password", "sasl_password")

    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = "pocketvl"
    group_id: str = "pocketvl-worker"
    # Static membership: a stable id per replica, so a restart within the session timeout
    # keeps its partitions instead of rebalancing the whole group. None: a dynamic member.
    group_instance_id: str | None = Field(default=None, min_length=1, max_length=249)
    client_id: str = "pocketvl"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    # TLS (SSL, SASL_SSL): CAs that sign the brokers' certificates (None: the system's), and
    # a client certificate for brokers that require one (mutual TLS).
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_password: SecretStr | None = None  # of an encrypted ssl_keyfile
    ssl_check_hostname: bool = True
    # SASL (SASL_PLAINTEXT, SASL_SSL). OAUTHBEARER reads its token from a file on every
    # (re)authentication, so a token rotated on disk (a projected token) is picked up.
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_oauth_token_file: Path | None = None
    bootstrap_timeout_ms: int = Field(default=10_000, ge=100)
    # The loop polls continuously whatever inference takes, so the poll interval only
    # bounds a stuck loop; a short session timeout moves a dead worker's partitions quickly.
    max_poll_records: int = Field(default=4, ge=1)
    max_poll_interval_ms: int = Field(default=900_000, ge=1_000)
    session_timeout_ms: int = Field(default=10_000, ge=1_000)
    heartbeat_interval_ms: int = Field(default=1_000, ge=100)
    max_message_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    # The worker creates its topics when missing (local stacks, first runs). Where topics are
    # managed elsewhere (a compose step, Strimzi KafkaTopics) and the worker's principal has
    # no Create permission, set false: the worker then only uses them.
    create_topics: bool = True

    @field_validator("topic_prefix")
    @classmethod
    def _valid_prefix(cls, value: str) -> str:
        if not TOPIC_PREFIX_PATTERN.match(value):
            raise ValueError("topic_prefix may only contain letters, digits, '.', '_' and '-'")
        return value


class RedisSettings(Section):
    secret_fields = ("password",)

    url: str = "redis://127.0.0.1:6379/0"  # rediss://... for TLS
    # ACL user (None: the "default" user) and its password.
    username: str | None = None
    password: SecretStr | None = None
    # TLS (rediss://): CAs that sign the server's certificate (None: the system's), and a
    # client certificate for servers that require one (tls-auth-clients).
    ssl_ca_file: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_check_hostname: bool = True
    ttl_seconds: int = Field(default=7 * 24 * 3600, ge=1)
    socket_timeout_s: float = Field(default=2.0, gt=0)
    key_prefix: str = "pocketvl"

    @field_validator("url")
    @classmethod
    def _no_password_in_url(cls, url: str) -> str:
        # A URL is printed and logged; a secret inside it would be too.
        if urlsplit(url).password is not None:
            raise ValueError(
                "redis.url must not carry a password: set redis.password "
                "(or POCKETVL_REDIS__PASSWORD_FILE) and redis.username instead"
            )
        return url


class TritonSettings(Section):
    url: str = "127.0.0.1:8001"
    # gRPC over TLS: the CAs that sign Triton's certificate (None: the system's), and a client
    # certificate for a Triton started with --grpc-use-ssl-mutual.
    ssl: bool = False
    ssl_root_cert: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
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
    # Pixels through system shared memory instead of inside the gRPC message: only for a
    # Triton on this host (or a container sharing this one's IPC namespace and /dev/shm).
    shared_memory: bool = False
