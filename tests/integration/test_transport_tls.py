"""Redis and Triton over TLS, with the adapters as the worker builds them from settings.

Each test starts its own server on free loopback ports with certificates made by the test:
redis-server with a TLS port only, client certificates required and an ACL user (the
default user is off); tritonserver with mutual-TLS gRPC serving the echo stand-in model.
Wrong passwords, missing client certificates and untrusted CAs must be refused.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydantic import SecretStr

from pocketvl.adapters.redis_store import RedisDoneStore, RedisResultCache, connect
from pocketvl.adapters.triton_client import TritonInference
from pocketvl.devstack.processes import free_ports, stop_pid, wait_until
from pocketvl.devstack.stack import redis_binary, triton_environment, triton_home
from pocketvl.errors import CacheUnavailable, UnsafeSettings
from pocketvl.safe_defaults import production_problems
from pocketvl.service import refuse_unsafe_start
from pocketvl.settings import RedisSettings, Route, RoutingSettings, Settings, TritonSettings
from pocketvl.worker.ports import CachedResult, GenerationResult
from tests.conftest import REPO
from tests.support.certificates import Certificates, make_certificates

pytestmark = pytest.mark.integration
PASSWORD = "acl-Pa55-for-the-app-user"
WRONG = "wrong-Pa55-guessed-by-someone"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


def _spawn(
    argv: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)


@pytest.fixture(scope="module")
def tls_redis(certs: Certificates, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    work = tmp_path_factory.mktemp("redis")
    port = free_ports(1)[0]
    argv = [str(redis_binary()), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1"]
    argv += ["--tls-cert-file", str(certs.server_cert), "--tls-key-file", str(certs.server_key)]
    argv += ["--tls-ca-cert-file", str(certs.ca), "--tls-auth-clients", "yes"]
    argv += ["--save", "", "--appendonly", "no", "--dir", str(work)]
    argv += ["--user", "default", "off", "--user", "app", "on", f">{PASSWORD}", "~*", "+@all"]
    proc = _spawn(argv, work / "redis.log")
    try:
        store = _done_store(_redis_settings(certs, port, work))
        wait_until(store.reachable, 10, "redis-server (TLS)", proc, work / "redis.log")
        yield port
    finally:
        stop_pid(proc.pid, "redis-server")
        proc.wait()


def _redis_settings(certs: Certificates, port: int, work: Path, **changes: object) -> RedisSettings:
    (work / "password").write_text(PASSWORD + "\n")
    fields: dict[str, object] = {
        "url": f"rediss://127.0.0.1:{port}/0",
        "username": "app",
        "password_file": str(work / "password"),  # as POCKETVL_REDIS__PASSWORD_FILE
        "ssl_ca_file": certs.ca,
        "ssl_certfile": certs.client_cert,
        "ssl_keyfile": certs.client_key,
        "socket_timeout_s": 2.0,
    }
    return RedisSettings.model_validate({**fields, **changes})


def _done_store(settings: RedisSettings) -> RedisDoneStore:
    return RedisDoneStore(connect(settings), 60, "tls-test")


def test_redis_over_tls_with_an_acl_user(
    tls_redis: int, certs: Certificates, tmp_path: Path
) -> None:
    settings = _redis_settings(certs, tls_redis, tmp_path)
    assert settings.password is not None and settings.password.get_secret_value() == PASSWORD
    client = connect(settings)
    assert client.acl_whoami() == "app"
    assert PASSWORD not in repr(client)
    done = RedisDoneStore(client, 60, "tls-test")
    done.mark(["e-1"])
    assert done.seen("e-1") and not done.seen("e-2")
    cache = RedisResultCache(client, 60)
    entry = CachedResult(GenerationResult("a caption", 5, 2, "1"), ((64, 48),), {})
    cache.put("tls-test:key", entry)
    assert cache.get("tls-test:key") == entry


def test_redis_refuses_a_wrong_password_without_it_showing(
    tls_redis: int, certs: Certificates, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _redis_settings(certs, tls_redis, tmp_path, password_file=None)
    settings = settings.model_copy(update={"password": SecretStr(WRONG)})
    caplog.set_level(logging.DEBUG)
    cache = RedisResultCache(connect(settings), 60)
    with pytest.raises(CacheUnavailable) as caught:
        cache.get("tls-test:key")
    assert "AuthenticationError" in str(caught.value)
    assert not _done_store(settings).reachable()
    chained = f"{caught.value!r} {caught.value.__cause__!r} {caught.value.__context__!r}"
    assert WRONG not in chained and WRONG not in caplog.text
    assert "cache lookup failed" in caplog.text  # the failure was logged, without the secret


def test_redis_refuses_a_client_without_certificate_or_user(
    tls_redis: int, certs: Certificates, tmp_path: Path
) -> None:
    no_cert = _redis_settings(certs, tls_redis, tmp_path, ssl_certfile=None, ssl_keyfile=None)
    assert not _done_store(no_cert).reachable()  # tls-auth-clients: the handshake fails
    no_user = _redis_settings(certs, tls_redis, tmp_path, username=None, password_file=None)
    assert not _done_store(no_user).reachable()  # the default user is off
    other_ca = make_certificates(tmp_path / "other")
    untrusted = _redis_settings(certs, tls_redis, tmp_path, ssl_ca_file=other_ca.ca)
    assert not _done_store(untrusted).reachable()  # the server's certificate is not trusted
    plain = _redis_settings(certs, tls_redis, tmp_path, url=f"redis://127.0.0.1:{tls_redis}/0")
    assert not _done_store(plain).reachable()


@pytest.fixture(scope="module")
def tls_triton(certs: Certificates, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("triton")
    grpc, http, metrics = free_ports(3)
    home = triton_home()
    argv = [str(home / "bin" / "tritonserver")]
    argv += [f"--model-repository={_echo_repository(work / 'repository')}"]
    argv += [f"--backend-directory={home / 'backends'}", "--exit-timeout-secs=3"]
    argv += [f"--grpc-port={grpc}", f"--http-port={http}", f"--metrics-port={metrics}"]
    argv += [f"--{k}-address=127.0.0.1" for k in ("grpc", "http", "metrics")]
    argv += ["--model-control-mode=explicit", "--load-model=echo", "--load-model=dummy_echo"]
    argv += ["--grpc-use-ssl-mutual=true", f"--grpc-root-cert={certs.ca}"]
    argv += [f"--grpc-server-cert={certs.server_cert}", f"--grpc-server-key={certs.server_key}"]
    log = work / "triton.log"
    proc = _spawn(argv, log, triton_environment(work))
    url = f"127.0.0.1:{grpc}"
    inference = TritonInference(_triton_settings(certs, url))
    try:
        wait_until(lambda: inference.ready("echo"), 120, "tritonserver (TLS)", proc, log)
        yield url
    finally:
        inference.close()
        stop_pid(proc.pid, "tritonserver")
        proc.wait()


def _echo_repository(directory: Path) -> Path:
    """The echo stand-in, and a copy whose config says it serves random weights."""
    echo = REPO / "bench" / "model_repository" / "echo"
    shutil.copytree(echo, directory / "echo")
    config = (echo / "config.pbtxt").read_text().replace('name: "echo"', 'name: "dummy_echo"')
    dummy = 'parameters: { key: "dummy_weights" value: { string_value: "1b" } }\n'
    shutil.copytree(echo, directory / "dummy_echo")
    (directory / "dummy_echo" / "config.pbtxt").write_text(config + dummy)
    return directory


def _triton_settings(certs: Certificates, url: str, **changes: object) -> TritonSettings:
    fields: dict[str, object] = {
        "url": url,
        "ssl": True,
        "ssl_root_cert": certs.ca,
        "ssl_certfile": certs.client_cert,
        "ssl_keyfile": certs.client_key,
        "timeout_s": 10.0,
    }
    return TritonSettings.model_validate({**fields, **changes})


def test_triton_over_mutual_tls(tls_triton: str, certs: Certificates) -> None:
    inference = TritonInference(_triton_settings(certs, tls_triton))
    try:
        assert inference.ready("echo")
        result = inference.generate("echo", [np.zeros((2, 2, 3), np.uint8)], "over TLS?", 4, 1)
        assert result.text == "over TLS?"
        assert inference.parameters("echo") == {"checkpoint": "none (a stand-in)", "delay_ms": "0"}
    finally:
        inference.close()


@pytest.mark.parametrize(
    "changes",
    [
        {"ssl_certfile": None, "ssl_keyfile": None},  # mutual TLS: a client certificate needed
        {"ssl": False, "ssl_root_cert": None, "ssl_certfile": None, "ssl_keyfile": None},
        {"ssl_root_cert": "OTHER_CA"},  # Triton's certificate is not trusted
    ],
    ids=["no-client-cert", "plaintext", "untrusted-ca"],
)
def test_triton_refuses_clients_that_do_not_complete_tls(
    tls_triton: str, certs: Certificates, tmp_path: Path, changes: dict[str, object]
) -> None:
    if changes.get("ssl_root_cert") == "OTHER_CA":
        changes = {"ssl_root_cert": make_certificates(tmp_path).ca}
    inference = TritonInference(_triton_settings(certs, tls_triton, **changes))
    try:
        assert not inference.ready("echo")
        assert inference.parameters("echo") is None
    finally:
        inference.close()


def test_a_production_start_refuses_a_model_triton_says_serves_random_weights(
    tls_triton: str, certs: Certificates
) -> None:
    def production(model: str) -> Settings:
        route = Route(triton_model=model, checkpoint="Mini-InternVL2-1B-DA-RS")
        return Settings(
            routing=RoutingSettings(routes={"remote_sensing/classify": route}),
            triton=_triton_settings(certs, tls_triton),
        )

    assert production_problems(production("dummy_echo")) == []  # the settings look fine...
    with pytest.raises(UnsafeSettings) as caught:
        refuse_unsafe_start(production("dummy_echo"))  # ...but Triton says otherwise
    assert "dummy_echo serves random weights (config parameter dummy_weights='1b')" in str(
        caught.value
    )
    refuse_unsafe_start(production("echo"))  # a model without dummy weights starts
