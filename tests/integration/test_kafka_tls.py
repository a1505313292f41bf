"""Kafka over TLS with the settings the worker uses: CA, client certificate and key,
hostname check. tansu 0.6.0 (the local broker) has no working TLS listener, so the broker
runs plaintext behind a TLS proxy started by the test (client certificate required) and
advertises the proxy's address: produce, topic creation and consume all go through TLS.
SASL against a real broker is not covered here (see tests/unit/test_transport_security.py)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pocketvl.adapters.kafka_broker import ensure_topics, publish, read_records
from pocketvl.devstack.processes import free_ports, stop_pid, wait_until
from pocketvl.devstack.stack import tansu_binary
from pocketvl.errors import BrokerUnavailable
from pocketvl.settings import KafkaSettings
from pocketvl.worker.envelope import OutboundRecord
from tests.support.certificates import Certificates, make_certificates
from tests.support.tls_proxy import TlsProxy

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_broker(
    certs: Certificates, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, TlsProxy]]:
    work = tmp_path_factory.mktemp("tansu")
    broker_port, proxy_port = free_ports(2)
    advertised = f"tcp://127.0.0.1:{proxy_port}"
    argv = [str(tansu_binary()), "broker", "--listener-url", f"tcp://127.0.0.1:{broker_port}"]
    argv += ["--advertised-listener-url", advertised, "--storage-engine", "memory://tansu/"]
    log = work / "tansu.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        with TlsProxy(certs, proxy_port, ("127.0.0.1", broker_port)) as proxy:
            bootstrap = f"127.0.0.1:{proxy_port}"
            settings = _tls_settings(certs, bootstrap)
            wait_until(lambda: _reachable(settings), 30, "tansu behind TLS", proc, log)
            yield bootstrap, proxy
    finally:
        stop_pid(proc.pid, "tansu")
        proc.wait()


def _reachable(settings: KafkaSettings) -> bool:
    ensure_topics(settings, [])  # connects, lists the topics, creates none
    return True


def _tls_settings(certs: Certificates, bootstrap: str, **changes: object) -> KafkaSettings:
    fields: dict[str, object] = {
        "bootstrap_servers": bootstrap,
        "security_protocol": "SSL",
        "ssl_cafile": certs.ca,
        "ssl_certfile": certs.client_cert,
        "ssl_keyfile": certs.client_key,
        "bootstrap_timeout_ms": 3000,
    }
    return KafkaSettings.model_validate({**fields, **changes})


def test_produce_and_consume_over_tls(
    tls_broker: tuple[str, TlsProxy], certs: Certificates
) -> None:
    bootstrap, _ = tls_broker
    settings = _tls_settings(certs, bootstrap)  # hostname check on: 127.0.0.1 is in the SAN
    topic = f"tls-{uuid.uuid4().hex[:8]}"
    ensure_topics(settings, [topic], partitions=1)
    publish(settings, [OutboundRecord(topic, b"k", f"v{i}".encode(), []) for i in range(3)])
    records = read_records(settings, [topic], 3, timeout_s=20)
    assert [r.value for r in records] == [b"v0", b"v1", b"v2"]


@pytest.mark.parametrize(
    "changes",
    [
        {"ssl_certfile": None, "ssl_keyfile": None},
        {"ssl_cafile": "OTHER_CA"},
        {"security_protocol": "PLAINTEXT"},
    ],
    ids=["no-client-cert", "untrusted-ca", "plaintext"],
)
def test_clients_that_do_not_complete_tls_get_no_broker(
    tls_broker: tuple[str, TlsProxy],
    certs: Certificates,
    tmp_path: Path,
    changes: dict[str, object],
) -> None:
    bootstrap, proxy = tls_broker
    if changes.get("ssl_cafile") == "OTHER_CA":
        changes = {"ssl_cafile": make_certificates(tmp_path).ca}
    refused_before = len(proxy.refused)
    with pytest.raises(BrokerUnavailable):
        ensure_topics(_tls_settings(certs, bootstrap, **changes), ["never"])
    assert len(proxy.refused) > refused_before  # the TLS handshake itself failed
