"""TLS and SASL settings as the client libraries' arguments, secrets given as files, and
secrets kept out of repr, dumps, logs and errors. No server: see
tests/integration/test_transport_tls.py for Redis and Triton over TLS."""

from __future__ import annotations

import logging
import os
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.net.sasl import get_sasl_mechanism
from kafka.net.transport import KafkaSSLTransport
from pydantic import SecretStr, ValidationError

from pocketvl.adapters.kafka_broker import _common, ensure_topics, publish
from pocketvl.adapters.kafka_security import FileTokenProvider, security_kwargs
from pocketvl.adapters.redis_store import connection_kwargs
from pocketvl.adapters.triton_client import tls_kwargs
from pocketvl.devstack.processes import free_ports
from pocketvl.errors import BrokerUnavailable
from pocketvl.settings import KafkaSettings, RedisSettings, Settings, TritonSettings
from pocketvl.worker.envelope import OutboundRecord
from tests.support.certificates import Certificates, make_certificates

SECRET = "s3cr3t-Pa55-never-shown"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


def _kafka_accepts(kwargs: dict[str, Any]) -> None:
    """Every argument is one kafka-python's three clients know (they refuse unknown ones)."""
    for client in (KafkaConsumer, KafkaProducer, KafkaAdminClient):
        assert set(kwargs) <= set(client.DEFAULT_CONFIG), client.__name__


def test_plaintext_kafka_gets_no_tls_or_sasl_arguments() -> None:
    assert security_kwargs(KafkaSettings()) == {"security_protocol": "PLAINTEXT"}


def test_kafka_ssl_arguments_build_kafka_pythons_ssl_context(certs: Certificates) -> None:
    settings = KafkaSettings(
        security_protocol="SSL",
        ssl_cafile=certs.ca,
        ssl_certfile=certs.client_cert,
        ssl_keyfile=certs.client_key,
    )
    kwargs = security_kwargs(settings)
    assert kwargs == {
        "security_protocol": "SSL",
        "ssl_check_hostname": True,
        "ssl_cafile": str(certs.ca),
        "ssl_certfile": str(certs.client_cert),
        "ssl_keyfile": str(certs.client_key),
    }
    _kafka_accepts(kwargs)
    # kafka-python's own context builder loads the CA and the client certificate and key.
    context = KafkaSSLTransport._build_ssl_context({**KafkaSSLTransport.DEFAULT_CONFIG, **kwargs})
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    assert len(context.get_ca_certs()) == 1


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_kafka_sasl_ssl_password_mechanisms(mechanism: str, certs: Certificates) -> None:
    settings = KafkaSettings.model_validate(
        {
            "security_protocol": "SASL_SSL",
            "ssl_cafile": certs.ca,
            "ssl_check_hostname": False,
            "sasl_mechanism": mechanism,
            "sasl_username": "pocketvl",
            "sasl_password": SECRET,
        }
    )
    kwargs = security_kwargs(settings)
    assert kwargs == {
        "security_protocol": "SASL_SSL",
        "ssl_check_hostname": False,
        "ssl_cafile": str(certs.ca),
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "pocketvl",
        "sasl_plain_password": SECRET,
    }
    _kafka_accepts(kwargs)
    sasl = get_sasl_mechanism(mechanism)(host="broker", **kwargs)  # validates its config
    first = sasl.auth_bytes()
    assert b"pocketvl" in first  # PLAIN sends user and password, SCRAM its client-first
    assert (SECRET.encode() in first) == (mechanism == "PLAIN")


def test_kafka_sasl_plaintext_gets_no_tls_arguments() -> None:
    settings = KafkaSettings(
        security_protocol="SASL_PLAINTEXT",
        ssl_cafile=Path("/unused.pem"),
        sasl_mechanism="PLAIN",
        sasl_username="u",
        sasl_password=SecretStr("p"),
    )
    assert security_kwargs(settings) == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "u",
        "sasl_plain_password": "p",
    }


def test_oauthbearer_token_is_reread_from_its_file(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("token-one\n")
    settings = KafkaSettings(
        security_protocol="SASL_SSL", sasl_mechanism="OAUTHBEARER", sasl_oauth_token_file=token
    )
    kwargs = security_kwargs(settings)
    provider = kwargs.pop("sasl_oauth_token_provider")
    assert isinstance(provider, FileTokenProvider) and provider.path == token
    assert kwargs == {
        "security_protocol": "SASL_SSL",
        "ssl_check_hostname": True,
        "sasl_mechanism": "OAUTHBEARER",
    }
    _kafka_accepts({**kwargs, "sasl_oauth_token_provider": provider})
    sasl = get_sasl_mechanism("OAUTHBEARER")(host="broker", sasl_oauth_token_provider=provider)
    assert sasl.auth_bytes() == b"n,,\x01auth=Bearer token-one\x01\x01"
    token.write_text("token-two\n")  # rotated on disk: the next authentication uses it
    assert sasl.auth_bytes() == b"n,,\x01auth=Bearer token-two\x01\x01"


def test_every_kafka_client_gets_the_security_arguments(certs: Certificates) -> None:
    settings = KafkaSettings(security_protocol="SSL", ssl_cafile=certs.ca)
    common = _common(settings)
    assert common["security_protocol"] == "SSL" and common["ssl_cafile"] == str(certs.ca)


def test_secret_files_fill_secret_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sasl").write_text(SECRET + "\n")
    (tmp_path / "redis").write_text("redis-" + SECRET)
    monkeypatch.setenv("POCKETVL_KAFKA__SASL_PASSWORD_FILE", str(tmp_path / "sasl"))
    monkeypatch.setenv("POCKETVL_REDIS__PASSWORD_FILE", str(tmp_path / "redis"))
    settings = Settings()
    assert settings.kafka.sasl_password is not None
    assert settings.kafka.sasl_password.get_secret_value() == SECRET  # newline dropped
    assert settings.redis.password is not None
    assert settings.redis.password.get_secret_value() == "redis-" + SECRET


def test_secret_file_errors_name_the_file_not_the_secret(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"sasl_password_file: cannot read .*missing"):
        KafkaSettings.model_validate({"sasl_password_file": str(tmp_path / "missing")})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValidationError, match="is empty"):
        RedisSettings.model_validate({"password_file": str(tmp_path / "empty")})
    (tmp_path / "pw").write_text(SECRET)
    with pytest.raises(ValidationError, match="give password or password_file, not both"):
        RedisSettings.model_validate({"password": "x", "password_file": str(tmp_path / "pw")})


def test_a_password_in_the_redis_url_is_refused_without_showing_it() -> None:
    with pytest.raises(ValidationError, match=r"set redis\.password"):
        RedisSettings(url=f"redis://user:{SECRET}@cache:6379/0")
    refused = subprocess.run(
        [sys.executable, "-m", "pocketvl.cli.main", "worker"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "POCKETVL_REDIS__URL": f"redis://user:{SECRET}@cache:6379/0"},
        check=False,
    )
    assert refused.returncode == 2 and "set redis.password" in refused.stderr
    assert SECRET[:6] not in refused.stderr + refused.stdout


def test_redis_arguments_for_acl_user_and_tls(certs: Certificates) -> None:
    plain = connection_kwargs(RedisSettings(username="app", password=SecretStr(SECRET)))
    assert plain == {
        "socket_timeout": 2.0,
        "socket_connect_timeout": 2.0,
        "username": "app",
        "password": SECRET,
    }
    tls = connection_kwargs(
        RedisSettings(
            url="rediss://cache:6380/0",
            ssl_ca_file=certs.ca,
            ssl_certfile=certs.client_cert,
            ssl_keyfile=certs.client_key,
        )
    )
    assert tls == {
        "socket_timeout": 2.0,
        "socket_connect_timeout": 2.0,
        "ssl_check_hostname": True,
        "ssl_ca_certs": str(certs.ca),
        "ssl_certfile": str(certs.client_cert),
        "ssl_keyfile": str(certs.client_key),
    }


def test_triton_tls_arguments(certs: Certificates) -> None:
    assert tls_kwargs(TritonSettings(ssl_root_cert=certs.ca)) == {}  # ssl off: plain gRPC
    settings = TritonSettings(
        ssl=True,
        ssl_root_cert=certs.ca,
        ssl_certfile=certs.client_cert,
        ssl_keyfile=certs.client_key,
    )
    assert tls_kwargs(settings) == {
        "ssl": True,
        "root_certificates": str(certs.ca),
        "private_key": str(certs.client_key),
        "certificate_chain": str(certs.client_cert),
    }


def _secret_settings() -> Settings:
    return Settings(
        kafka=KafkaSettings(
            security_protocol="SASL_SSL",
            sasl_mechanism="PLAIN",
            sasl_username="app",
            sasl_password=SecretStr(SECRET),
            ssl_password=SecretStr("key-" + SECRET),
        ),
        redis=RedisSettings(username="app", password=SecretStr("redis-" + SECRET)),
    )


def test_secrets_stay_out_of_repr_str_and_dumps() -> None:
    settings = _secret_settings()
    for text in (repr(settings), str(settings), settings.model_dump_json(), str(settings.kafka)):
        assert SECRET not in text
    assert "**********" in settings.model_dump_json()


def test_as_environment_carries_the_secrets_to_a_child_process() -> None:
    from pocketvl.settings import as_environment

    env = as_environment(_secret_settings())
    assert env["POCKETVL_KAFKA__SASL_PASSWORD"] == SECRET
    assert env["POCKETVL_REDIS__PASSWORD"] == "redis-" + SECRET


def test_a_failed_kafka_connection_logs_and_raises_no_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = KafkaSettings(
        bootstrap_servers=f"127.0.0.1:{free_ports(1)[0]}",
        bootstrap_timeout_ms=500,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="app",
        sasl_password=SecretStr(SECRET),
    )
    # kafka-python's own debug logging included, whatever level an earlier CLI run gave it
    caplog.set_level(logging.DEBUG, logger="kafka")
    with pytest.raises(BrokerUnavailable) as caught:
        publish(settings, [OutboundRecord("t", None, b"v", [])], timeout_s=1)
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)
    with pytest.raises(BrokerUnavailable):
        ensure_topics(settings, ["t"])  # the admin client logs its configuration at DEBUG
    assert "Starting KafkaAdminClient with configuration" in caplog.text
    assert "'sasl_plain_password': '***'" in caplog.text
    assert SECRET not in caplog.text
