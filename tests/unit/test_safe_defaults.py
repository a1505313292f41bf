"""A production start refuses unsafe settings, one message per problem naming the setting;
dev mode allows them. The rules are pure (pocketvl.safe_defaults); the last test runs the
real ``pocketvl worker`` command, which must refuse before it connects to anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from pocketvl.devstack.processes import free_ports
from pocketvl.safe_defaults import is_loopback, production_problems, served_model_problems
from pocketvl.settings import (
    KafkaSettings,
    RedisSettings,
    Route,
    RoutingSettings,
    Settings,
    TritonSettings,
)

REPO = Path(__file__).resolve().parents[2]
REAL = Route(triton_model="mini_internvl2_1b_da_rs", checkpoint="Mini-InternVL2-1B-DA-RS")
CERT, KEY = Path("/run/tls/client.crt"), Path("/run/tls/client.key")


def _safe(**sections: Any) -> Settings:
    """Production settings with nothing to refuse, unless ``sections`` changes that."""
    base: dict[str, Any] = {
        "routing": RoutingSettings(routes={"remote_sensing/classify": REAL}),
        "kafka": KafkaSettings(bootstrap_servers="127.0.0.1:9092"),
        "redis": RedisSettings(url="redis://localhost:6379/0"),
        "triton": TritonSettings(url="[::1]:8001"),
    }
    return Settings(**{**base, **sections})


def _only(settings: Settings) -> str:
    problems = production_problems(settings)
    assert len(problems) == 1, problems
    return problems[0]


def test_safe_production_settings_pass_and_dev_allows_anything() -> None:
    assert production_problems(_safe()) == []
    assert production_problems(Settings(mode="dev")) == []  # tiny routes: fine in dev
    assert Settings().mode == "production"


def test_the_default_tiny_routes_are_refused_once_per_model() -> None:
    problems = production_problems(Settings())
    assert len(problems) == 1  # every route goes to the one tiny model: one message
    assert "internvl2_tiny_qwen2" in problems[0] and "POCKETVL_ROUTING__ROUTES" in problems[0]
    tiny_checkpoint = Route(triton_model="my_model", checkpoint="tiny-internvl2-phi3")
    message = _only(_safe(routing=RoutingSettings(routes={"medical/vqa": tiny_checkpoint})))
    assert "medical/vqa" in message and "random-weight" in message


def test_models_triton_says_serve_random_or_tiny_weights_are_refused() -> None:
    real = {"checkpoint": "Mini-InternVL2-1B-DA-RS", "dummy_weights": ""}
    assert served_model_problems("mini_internvl2_1b_da_rs", real) == []
    dummy = {"checkpoint": "tiny-internvl2-qwen2", "dummy_weights": "1b"}
    [message] = served_model_problems("mini_internvl2_1b_da_rs", dummy)
    assert "dummy_weights='1b'" in message and "POCKETVL_ROUTING__ROUTES" in message
    [tiny] = served_model_problems("renamed", {"checkpoint": "tiny-internvl2-phi3"})
    assert "tiny random-weight checkpoint" in tiny


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("broker", False),
        ("10.0.0.5", False),
        ("localhost.example.com", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT"])
def test_plaintext_kafka_off_the_loopback_is_refused(protocol: Any) -> None:
    kafka: dict[str, Any] = {"bootstrap_servers": "127.0.0.1:9092,broker-2:9092"}
    if protocol == "SASL_PLAINTEXT":
        kafka |= {"sasl_mechanism": "PLAIN", "sasl_username": "u", "sasl_password": "p"}
    message = _only(_safe(kafka=KafkaSettings(security_protocol=protocol, **kafka)))
    assert "broker-2:9092" in message and "POCKETVL_KAFKA__SECURITY_PROTOCOL" in message


def test_plaintext_redis_and_triton_off_the_loopback_are_refused() -> None:
    message = _only(_safe(redis=RedisSettings(url="redis://cache:6379/0")))
    assert "rediss://" in message and "POCKETVL_REDIS__URL" in message
    message = _only(_safe(triton=TritonSettings(url="triton:8001")))
    assert "POCKETVL_TRITON__SSL" in message
    tls = _safe(
        redis=RedisSettings(url="rediss://cache:6380/0"),
        triton=TritonSettings(url="triton:8001", ssl=True),
        kafka=KafkaSettings(bootstrap_servers="broker:9093", security_protocol="SSL"),
    )
    assert production_problems(tls) == []


@pytest.mark.parametrize(
    ("kafka", "setting"),
    [
        ({"security_protocol": "SASL_SSL"}, "POCKETVL_KAFKA__SASL_MECHANISM"),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_password": "p"},
            "POCKETVL_KAFKA__SASL_USERNAME",
        ),
        (
            {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_username": "u",
            },
            "POCKETVL_KAFKA__SASL_PASSWORD_FILE",
        ),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER"},
            "POCKETVL_KAFKA__SASL_OAUTH_TOKEN_FILE",
        ),
        ({"sasl_mechanism": "PLAIN"}, "POCKETVL_KAFKA__SASL_MECHANISM"),
        ({"security_protocol": "SSL", "ssl_certfile": CERT}, "POCKETVL_KAFKA__SSL_KEYFILE"),
        ({"security_protocol": "SSL", "ssl_keyfile": KEY}, "POCKETVL_KAFKA__SSL_CERTFILE"),
        ({"ssl_cafile": CERT}, "SSL or SASL_SSL"),
        (
            {"security_protocol": "SSL", "ssl_check_hostname": False},
            "POCKETVL_KAFKA__SSL_CHECK_HOSTNAME",
        ),
    ],
)
def test_incomplete_kafka_credentials_are_refused(kafka: dict[str, Any], setting: str) -> None:
    assert setting in _only(_safe(kafka=KafkaSettings.model_validate(kafka)))


@pytest.mark.parametrize(
    ("redis", "setting"),
    [
        ({"username": "app"}, "POCKETVL_REDIS__PASSWORD_FILE"),
        ({"ssl_ca_file": CERT}, "rediss://"),
        ({"url": "rediss://localhost", "ssl_certfile": CERT}, "POCKETVL_REDIS__SSL_KEYFILE"),
        (
            {"url": "rediss://localhost", "ssl_check_hostname": False},
            "POCKETVL_REDIS__SSL_CHECK_HOSTNAME",
        ),
    ],
)
def test_incomplete_redis_credentials_are_refused(redis: dict[str, Any], setting: str) -> None:
    assert setting in _only(_safe(redis=RedisSettings.model_validate(redis)))
    with_password = RedisSettings(username="app", password=SecretStr("p"))
    assert production_problems(_safe(redis=with_password)) == []


@pytest.mark.parametrize(
    ("triton", "setting"),
    [
        ({"ssl_root_cert": CERT}, "POCKETVL_TRITON__SSL=true"),
        ({"ssl": True, "ssl_keyfile": KEY}, "POCKETVL_TRITON__SSL_CERTFILE"),
    ],
)
def test_incomplete_triton_tls_is_refused(triton: dict[str, Any], setting: str) -> None:
    assert setting in _only(_safe(triton=TritonSettings.model_validate(triton)))


def _worker(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("POCKETVL_")}
    return subprocess.run(
        [sys.executable, "-m", "pocketvl.cli.main", "worker", "--max-records", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**clean, **env},
        check=False,
    )


def test_pocketvl_worker_refuses_to_start_in_production() -> None:
    nothing = f"127.0.0.1:{free_ports(1)[0]}"  # no Triton: its models cannot be described
    refused = _worker(
        {
            "POCKETVL_KAFKA__BOOTSTRAP_SERVERS": "broker.example:9092",
            "POCKETVL_TRITON__URL": nothing,
        }
    )
    assert refused.returncode == 2, refused.stderr
    assert "refusing to start in production mode" in refused.stderr
    assert "internvl2_tiny_qwen2" in refused.stderr  # the default routes
    assert "POCKETVL_KAFKA__SECURITY_PROTOCOL" in refused.stderr
    assert "POCKETVL_MODE=dev" in refused.stderr
    assert "processed" not in refused.stdout


def test_a_canary_or_fallback_to_a_tiny_model_is_refused_too() -> None:
    tiny = {"triton_model": "internvl2_tiny_phi3", "checkpoint": "tiny-internvl2-phi3"}
    for extra in ({"canary": {**tiny, "percent": 5}}, {"fallback": tiny}):
        route = Route.model_validate({**REAL.model_dump(), **extra})
        message = _only(_safe(routing=RoutingSettings(routes={"remote_sensing/vqa": route})))
        assert "internvl2_tiny_phi3" in message and "remote_sensing/vqa" in message
