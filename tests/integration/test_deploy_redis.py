"""The Redis of docker-compose.yml and of deploy/k8s, started here from their own command lines
with certificates and ACL from deploy/compose/gen-secrets.sh: the worker's adapters work as the
ACL user over TLS, everything else is refused, and the healthcheck / readiness probe passes."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml
from redis.backoff import NoBackoff
from redis.retry import Retry

from pocketvl.adapters.redis_store import RedisDoneStore, RedisResultCache
from pocketvl.devstack.processes import free_ports, wait_until
from pocketvl.settings import RedisSettings
from pocketvl.worker.caching import cache_key
from pocketvl.worker.ports import CachedResult, GenerationResult
from tests.conftest import REPO
from tests.support.kustomize import render

pytestmark = pytest.mark.integration

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
# Where each deployment mounts a gen-secrets.sh file (the k8s Secrets hold the same files
# under the keys the README's `kubectl create secret` commands give them).
K8S_FILES = {
    "/run/secrets/redis-tls/tls.crt": "redis_cert.pem",
    "/run/secrets/redis-tls/tls.key": "redis_key.pem",
    "/run/secrets/pocketvl-ca/ca.crt": "ca.pem",
    "/run/secrets/redis-acl/users.acl": "redis_users.acl",
}


def compose_redis() -> tuple[list[str], str]:
    service = COMPOSE["services"]["redis"]
    command = [a.replace("/run/secrets/", "{secrets}/") for a in service["command"]]
    return command, service["healthcheck"]["test"][1].replace("/run/secrets/", "{secrets}/")


def k8s_redis() -> tuple[list[str], str]:
    (statefulset,) = [o for o in render(REPO / "deploy" / "k8s") if o["kind"] == "StatefulSet"]
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    args = [K8S_FILES.get(a, a) for a in container["args"]]
    args = [f"{{secrets}}/{a}" if a in K8S_FILES.values() else a for a in args]
    probe = container["readinessProbe"]["exec"]["command"][2]
    for mounted, name in K8S_FILES.items():
        probe = probe.replace(mounted, f"{{secrets}}/{name}")
    return ["redis-server", *args], probe


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("secrets")
    script = REPO / "deploy" / "compose" / "gen-secrets.sh"
    subprocess.run(["sh", str(script), str(out)], check=True, capture_output=True)
    return out


@pytest.fixture(params=["compose", "k8s"])
def deployed_redis(
    request: pytest.FixtureRequest, secrets: Path, tmp_path: Path
) -> Iterator[tuple[int, str]]:
    command, check = compose_redis() if request.param == "compose" else k8s_redis()
    (port,) = free_ports(1)
    argv = [a.format(secrets=secrets) for a in command]
    argv[argv.index("--tls-port") + 1] = str(port)
    log = tmp_path / "redis.log"
    with log.open("wb") as out:
        process = subprocess.Popen([*argv, "--dir", str(tmp_path)], stdout=out, stderr=out)
    check = check.format(secrets=secrets).replace("-p 6380", f"-p {port}")
    try:
        wait_until(
            lambda: subprocess.run(["sh", "-c", check], check=False).returncode == 0,
            15,
            "redis (healthcheck)",
            process,
            log,
        )
        yield port, check
    finally:
        process.terminate()
        process.wait(10)


def client(port: int, secrets: Path, user: str | None, password: str | None) -> redis.Redis:
    return redis.Redis(
        host="localhost",  # a name in the server certificate
        port=port,
        username=user,
        password=password,
        ssl=True,
        ssl_ca_certs=str(secrets / "ca.pem"),
        socket_timeout=5,
        retry=Retry(NoBackoff(), 0),  # a refusal is the answer, not a blip to retry
    )


def test_the_worker_user_runs_the_worker_commands_and_nothing_else(
    deployed_redis: tuple[int, str], secrets: Path
) -> None:
    port, _ = deployed_redis
    prefix = RedisSettings().key_prefix
    worker = client(port, secrets, "worker", (secrets / "redis_worker_password").read_text())
    done = RedisDoneStore(worker, 60, prefix)
    done.mark(["e1", "e2"])
    assert done.reachable() and done.seen("e1") and done.seen_among(["e2", "e3"]) == {"e2"}
    cache = RedisResultCache(worker, 60)
    key = cache_key(prefix, "Mini-InternVL2-1B-DA-BDD", "1", {}, ["ab"], {}, {})
    entry = CachedResult(GenerationResult("a car", 10, 2, "1"))
    cache.put(key, entry)
    assert cache.get(key) == entry
    with pytest.raises(redis.exceptions.NoPermissionError):
        worker.set("elsewhere", b"1")
    with pytest.raises(redis.exceptions.NoPermissionError):
        worker.flushall()


def test_only_named_users_over_tls_get_in(deployed_redis: tuple[int, str], secrets: Path) -> None:
    port, check = deployed_redis
    with pytest.raises(redis.exceptions.AuthenticationError):
        client(port, secrets, None, None).ping()
    with pytest.raises(redis.exceptions.AuthenticationError):
        client(port, secrets, "worker", "wrong").ping()
    plain = redis.Redis(host="localhost", port=port, socket_timeout=3, retry=Retry(NoBackoff(), 0))
    with pytest.raises(redis.exceptions.ConnectionError):
        plain.ping()
    health = client(port, secrets, "healthcheck", "none")
    assert health.ping()
    with pytest.raises(redis.exceptions.NoPermissionError):
        health.get(f"{RedisSettings().key_prefix}:done:e1")
    failing = check.replace("--user healthcheck", "--user nobody")
    assert subprocess.run(["sh", "-c", failing], check=False).returncode != 0
