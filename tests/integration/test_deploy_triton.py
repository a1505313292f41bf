"""Triton started here with docker-compose.yml's Triton flags (the same as deploy/k8s's, a
contract test checks) and the certificate from deploy/compose/gen-secrets.sh: gRPC answers
over TLS only, the compose healthcheck command passes, and the metrics port serves what
Prometheus scrapes. The routed DA checkpoints are not here: it loads the bench's echo model."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
import yaml
from tritonclient.utils import InferenceServerException

from pocketvl.devstack.processes import free_ports, wait_until
from pocketvl.devstack.stack import triton_environment, triton_home
from tests.conftest import REPO
from tests.support.deployment import load_models

pytestmark = pytest.mark.integration

SERVICE = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["triton-cpu"]


def healthcheck(http_port: int) -> list[str]:
    _, python, flag, code = SERVICE["healthcheck"]["test"]
    assert python == "python" and flag == "-c"
    return [sys.executable, "-c", code.replace(":8000/", f":{http_port}/")]


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int, int, Path]]:
    secrets = tmp_path_factory.mktemp("secrets")
    script = REPO / "deploy" / "compose" / "gen-secrets.sh"
    subprocess.run(["sh", str(script), str(secrets)], check=True, capture_output=True)
    routed = set(load_models(SERVICE["command"]))
    flags = [
        a.replace("/run/secrets/", f"{secrets}/")
        for a in SERVICE["command"]
        if not a.startswith(("--model-repository=", "--load-model="))
    ]
    assert routed and any(a.startswith("--grpc-server-key=") for a in flags)
    home = triton_home()
    grpc, http, metrics = free_ports(3)
    argv = [str(home / "bin" / "tritonserver"), f"--backend-directory={home / 'backends'}"]
    argv += [f"--model-repository={REPO / 'bench' / 'model_repository'}", "--load-model=echo"]
    argv += [f"--grpc-port={grpc}", f"--http-port={http}", f"--metrics-port={metrics}"]
    argv += [f"--{k}-address=127.0.0.1" for k in ("grpc", "http", "metrics")]
    argv += [a.replace("--exit-timeout-secs=30", "--exit-timeout-secs=3") for a in flags]
    run = tmp_path_factory.mktemp("triton")
    log = run / "triton.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv,
            stdout=out,
            stderr=out,
            cwd=run,
            env=triton_environment(run),
            start_new_session=True,
        )
    try:
        wait_until(
            lambda: subprocess.run(healthcheck(http), check=False).returncode == 0,
            120,
            "tritonserver (compose healthcheck)",
            process,
            log,
        )
        yield grpc, http, metrics, secrets
    finally:
        process.terminate()
        process.wait(30)


def test_grpc_answers_over_tls_with_the_generated_ca(triton: tuple[int, int, int, Path]) -> None:
    grpc, _, _, secrets = triton
    client = grpcclient.InferenceServerClient(
        f"localhost:{grpc}", ssl=True, root_certificates=str(secrets / "ca.pem")
    )
    try:
        assert client.is_server_ready() and client.is_model_ready("echo")
    finally:
        client.close()


def test_plaintext_grpc_is_refused(triton: tuple[int, int, int, Path]) -> None:
    grpc, _, _, _ = triton
    client = grpcclient.InferenceServerClient(f"localhost:{grpc}")
    try:
        with pytest.raises(InferenceServerException):
            client.is_server_ready(client_timeout=5)
    finally:
        client.close()


def test_the_metrics_port_serves_prometheus_text(triton: tuple[int, int, int, Path]) -> None:
    _, _, metrics, _ = triton
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    assert 'nv_inference_request_success{model="echo"' in text
