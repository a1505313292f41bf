"""docker-compose.yml agrees with the code: services and healthchecks, start order, env names
(Settings fields), mounted files, ports, Prometheus targets, the collector's receivers, the
topics the one-shot step creates and the models Triton loads. No Docker engine runs it here."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pocketvl.adapters.ops_http import OpsServer
from pocketvl.modeltools import repository as model_repo
from pocketvl.modeltools.catalog import CATALOG
from pocketvl.settings import KafkaSettings, OpsSettings, RedisSettings, Settings
from pocketvl.worker.envelope import all_topics
from pocketvl.worker.health import Check, Report
from tests.conftest import REPO
from tests.support.deployment import (
    TRITON_MODEL_ENV,
    env_problems,
    load_models,
    production_routes,
    relative,
    repository_models,
    routed_models,
)

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
WORKER = SERVICES["worker"]
TRITONS = {"triton-cpu": "cpu", "triton-gpu": "gpu"}  # service -> profile
ONE_SHOTS = {"kafka-topics"}
# Made at deploy time, not committed: checkpoints (`pocketvl models fetch`) and secrets
# (deploy/compose/gen-secrets.sh).
RUNTIME_DIRS = {"checkpoints", "secrets"}
GEN_SECRETS = REPO / "deploy" / "compose" / "gen-secrets.sh"
TRITON_DEFAULT_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}  # tritonserver's own


def worker_env() -> dict[str, str]:
    return {k: str(v) for k, v in WORKER["environment"].items()}


def kafka_properties() -> dict[str, str]:
    text = (REPO / "deploy" / "compose" / "kafka" / "server.properties").read_text()
    pairs = (line.split("=", 1) for line in text.splitlines() if line and line[0] != "#")
    return {key.strip(): value.strip() for key, value in pairs}


def collector_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(
        (REPO / "deploy" / "compose" / "otel-collector.yaml").read_text()
    )
    return config


def port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1].split("/", 1)[0])


def names_of(service: str) -> set[str]:
    """The DNS names a service answers to on the compose network."""
    aliases = SERVICES[service].get("networks", {}).get("default", {}).get("aliases", [])
    return {service, *aliases}


def service_called(host: str) -> list[str]:
    return [name for name in SERVICES if host in names_of(name)]


def listening_ports() -> dict[str, set[int]]:
    """What each service listens on, from its own configuration (or the image's defaults)."""
    kafka = {port_of(x) for x in kafka_properties()["listeners"].split(",")}
    redis = SERVICES["redis"]["command"]
    receivers = collector_config()["receivers"]["otlp"]["protocols"]
    collector = {port_of(p["endpoint"]) for p in receivers.values()}
    collector.add(port_of(collector_config()["service"]["telemetry"]["metrics"]["address"]))
    collector.add(port_of(collector_config()["extensions"]["health_check"]["endpoint"]))
    out = {
        "kafka": kafka,
        "redis": {int(redis[redis.index("--tls-port") + 1])},
        "worker": {OpsSettings().port},
        "otel-collector": collector,
        "jaeger": {4317, 16686, 14269},
        "prometheus": {9090},
    }
    for triton in TRITONS:
        out[triton] = set(TRITON_DEFAULT_PORTS.values())
    return out


def test_every_long_running_service_has_a_healthcheck() -> None:
    assert set(SERVICES) == {
        "kafka",
        "kafka-topics",
        "redis",
        *TRITONS,
        "worker",
        "otel-collector",
        "jaeger",
        "prometheus",
    }
    missing = [n for n, s in SERVICES.items() if n not in ONE_SHOTS and "healthcheck" not in s]
    assert missing == []
    for name in ONE_SHOTS:
        assert SERVICES[name]["restart"] == "no"


def test_start_order_waits_for_health_and_for_the_topic_step() -> None:
    for name, service in SERVICES.items():
        for target, rule in service.get("depends_on", {}).items():
            assert isinstance(rule, dict), f"{name} -> {target}: use the long form with a condition"
            if target in ONE_SHOTS:
                assert rule["condition"] == "service_completed_successfully", (name, target)
            else:
                assert rule["condition"] == "service_healthy", (name, target)
                assert "healthcheck" in SERVICES[target], f"{name} waits on {target}: no check"
            # Only the profile-selected Tritons may be absent.
            assert rule.get("required", True) or target in TRITONS, (name, target)
    assert set(WORKER["depends_on"]) == {"kafka-topics", "redis", "otel-collector", *TRITONS}


def test_one_triton_per_profile_both_answering_as_triton() -> None:
    for name, profile in TRITONS.items():
        service = SERVICES[name]
        assert service["profiles"] == [profile]
        assert "triton" in names_of(name)
        gpus = service.get("deploy", {}).get("resources", {}).get("reservations", {})
        assert bool(gpus) == (profile == "gpu"), name
        args = service["build"]["args"]
        assert args["MODEL_KIND"] == profile
        assert (relative(service["build"]["context"]) / service["build"]["dockerfile"]).is_file()
    # Outside the profiles nothing else may claim the name "triton".
    assert [n for n in SERVICES if "triton" in names_of(n)] == list(TRITONS)


def test_the_cpu_image_generates_the_checked_in_repository() -> None:
    args = SERVICES["triton-cpu"]["build"]["args"]
    options = model_repo.RepositoryOptions(kind=args["MODEL_KIND"], dtype=args["MODEL_DTYPE"])
    assert model_repo.repository_drift(REPO / "model_repository", options) == []


@pytest.mark.parametrize("name", sorted(TRITONS))
def test_triton_loads_exactly_the_routed_models(name: str) -> None:
    command = SERVICES[name]["command"]
    loaded = load_models(command)
    assert len(loaded) == len(set(loaded)), "a model is loaded twice"
    assert set(loaded) == routed_models()
    assert "--model-control-mode=explicit" in command
    assert set(loaded) <= repository_models()
    args = SERVICES[name]["build"]["args"]
    options = model_repo.RepositoryOptions(kind=args["MODEL_KIND"], dtype=args["MODEL_DTYPE"])
    configs = model_repo.configs(options)
    for route in production_routes().values():
        config = configs[route.triton_model]
        assert f'key: "checkpoint" value: {{ string_value: "{route.checkpoint}" }}' in config
        assert f"KIND_{options.kind.upper()}" in config


def test_production_routes_name_real_checkpoints_for_every_task() -> None:
    from pocketvl.domains.registry import REGISTRY

    routes = production_routes()
    assert {spec.key for spec in REGISTRY} <= set(routes)
    catalog = {entry.name: entry for entry in CATALOG}
    for key, route in routes.items():
        assert route.checkpoint in catalog, f"{key}: {route.checkpoint} is not a DA checkpoint"
        assert catalog[route.checkpoint].triton_model == route.triton_model
        assert key.split("/")[0] == catalog[route.checkpoint].domain
        assert route.triton_model not in model_repo.TINY


def test_every_pocketvl_variable_sets_a_settings_field() -> None:
    assert env_problems(n for n in worker_env() if n.startswith("POCKETVL_")) == []
    for name in TRITONS:
        assert set(SERVICES[name].get("environment", {})) <= TRITON_MODEL_ENV


def test_the_triton_image_resolves_checkpoints_from_the_mounted_directory() -> None:
    dockerfile = (REPO / "deploy" / "triton" / "Dockerfile").read_text()
    serving = (REPO / "services" / "pocketvl" / "serving" / "triton_model.py").read_text()
    (env,) = TRITON_MODEL_ENV
    assert f'os.environ.get("{env}"' in serving
    match = re.search(rf"{env}=(\S+)", dockerfile)
    assert match, f"the Triton image does not set {env}"
    for name in TRITONS:
        targets = [v.split(":")[1] for v in SERVICES[name]["volumes"]]
        assert match.group(1) in targets
        assert "./checkpoints:/checkpoints:ro" in SERVICES[name]["volumes"]


def test_the_triton_image_pins_what_pyproject_pins() -> None:
    dockerfile = (REPO / "deploy" / "triton" / "Dockerfile").read_text()
    pyproject = (REPO / "pyproject.toml").read_text()
    for package in ("torch", "nvidia-pytriton"):
        pin = re.search(rf'"{package}==([^"]+)"', pyproject)
        assert pin, package
        assert f"{package}=={pin.group(1)}" in dockerfile, package


def test_the_worker_runs_pocketvl_worker_in_production_mode() -> None:
    assert WORKER["command"] == ["worker"]
    assert 'ENTRYPOINT ["pocketvl"]' in (REPO / "Dockerfile").read_text()
    assert worker_env()["POCKETVL_MODE"] == "production"
    (routes,) = [c for c in WORKER["configs"] if c["source"] == "routes"]
    assert worker_env()["POCKETVL_ROUTING__ROUTES_FILE"] == routes["target"]
    assert relative(COMPOSE["configs"]["routes"]["file"]) == REPO / "deploy/k8s/routes.json"


def test_worker_addresses_are_services_listening_there() -> None:
    env, ports = worker_env(), listening_ports()
    targets = {
        "POCKETVL_KAFKA__BOOTSTRAP_SERVERS": env["POCKETVL_KAFKA__BOOTSTRAP_SERVERS"],
        "POCKETVL_REDIS__URL": env["POCKETVL_REDIS__URL"].split("//")[1].split("/")[0],
        "POCKETVL_TRITON__URL": env["POCKETVL_TRITON__URL"],
        "OTEL_EXPORTER_OTLP_ENDPOINT": env["OTEL_EXPORTER_OTLP_ENDPOINT"].split("//")[1],
    }
    for variable, address in targets.items():
        host, port = address.rsplit(":", 1)
        services = service_called(host)
        assert services, f"{variable}: no service is called {host}"
        for service in services:
            assert int(port) in ports[service], f"{variable}: {service} is not on {port}"
    assert env["POCKETVL_TRITON__URL"].endswith(f":{TRITON_DEFAULT_PORTS['grpc']}")
    advertised = kafka_properties()["advertised.listeners"].split(",")
    assert f"SASL_SSL://{env['POCKETVL_KAFKA__BOOTSTRAP_SERVERS']}" in advertised
    assert env["POCKETVL_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["POCKETVL_REDIS__URL"].startswith("rediss://")
    assert env["POCKETVL_TRITON__SSL"] == "true"
    for name in TRITONS:
        assert "--grpc-use-ssl=true" in SERVICES[name]["command"]


def test_the_worker_healthcheck_asks_readyz_on_the_ops_port() -> None:
    port = OpsSettings().port
    assert worker_env()["POCKETVL_OPS__PORT"] == str(port)
    assert f"http://127.0.0.1:{port}/readyz" in " ".join(WORKER["healthcheck"]["test"])
    for name in TRITONS:
        check = " ".join(SERVICES[name]["healthcheck"]["test"])
        assert f"127.0.0.1:{TRITON_DEFAULT_PORTS['http']}/v2/health/ready" in check


def test_mounted_files_exist_or_are_made_at_deploy_time() -> None:
    sources = [relative(c["file"]) for c in COMPOSE["configs"].values()]
    sources += [relative(s["file"]) for s in COMPOSE["secrets"].values()]
    for service in SERVICES.values():
        binds = [v.split(":")[0] for v in service.get("volumes", [])]
        sources += [relative(b) for b in binds if b.startswith(".")]
        if isinstance(service.get("build"), dict):
            sources.append(relative(service["build"]["context"]))
    for source in sources:
        top = source.relative_to(REPO).parts[:1]
        assert source.exists() or set(top) <= RUNTIME_DIRS, source
    for service in SERVICES.values():
        for secret in service.get("secrets", []):
            assert secret in COMPOSE["secrets"]
        for config in service.get("configs", []):
            assert config["source"] in COMPOSE["configs"]


@pytest.fixture(scope="module")
def generated_secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to run deploy/compose/gen-secrets.sh")
    out = tmp_path_factory.mktemp("secrets")
    subprocess.run(["sh", str(GEN_SECRETS), str(out)], check=True, capture_output=True)
    return out


def test_gen_secrets_writes_every_secret_compose_mounts(generated_secrets: Path) -> None:
    for secret in COMPOSE["secrets"].values():
        path = generated_secrets / Path(secret["file"]).name
        assert path.is_file() and path.stat().st_size > 0, path
    certificates = ["kafka_cert.pem", "redis_cert.pem", "triton_cert.pem"]
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", "ca.pem", *certificates],
        check=False,
        cwd=generated_secrets,
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    acl = (generated_secrets / "redis_users.acl").read_text()
    assert "user worker on #" in acl and f"~{RedisSettings().key_prefix}:*" in acl
    assert worker_env()["POCKETVL_REDIS__USERNAME"] == "worker"
    assert worker_env()["POCKETVL_KAFKA__SASL_USERNAME"] == "worker"
    jaas = (generated_secrets / "kafka_server_jaas.conf").read_text()
    password = (generated_secrets / "kafka_worker_password").read_text()
    assert f'user_worker="{password}"' in jaas


def test_the_compose_worker_environment_builds_valid_settings(
    generated_secrets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's variables, with its mounts mapped to files here, build Settings."""
    mounts = {f"/run/secrets/{name}": generated_secrets / name for name in COMPOSE["secrets"]}
    for config in WORKER["configs"]:
        mounts[config["target"]] = relative(COMPOSE["configs"][config["source"]]["file"])
    for name in [n for n in os.environ if n.startswith("POCKETVL_")]:
        monkeypatch.delenv(name)
    for name, value in worker_env().items():
        monkeypatch.setenv(name, str(mounts.get(value, value)))
    settings = Settings()
    assert settings.kafka.topic_prefix == worker_env()["POCKETVL_KAFKA__TOPIC_PREFIX"]
    assert settings.ops.port == OpsSettings().port


def test_prometheus_scrapes_real_services_and_loads_the_alert_rules() -> None:
    config = yaml.safe_load((REPO / "deploy" / "compose" / "prometheus.yml").read_text())
    ports = listening_ports()
    scraped = set()
    for job in config["scrape_configs"]:
        targets = [t for s in job.get("static_configs", []) for t in s["targets"]]
        targets += [f"{n}:{d['port']}" for d in job.get("dns_sd_configs", []) for n in d["names"]]
        for target in targets:
            host, port = target.rsplit(":", 1)
            services = ["prometheus"] if host == "localhost" else service_called(host)
            assert services, f"{job['job_name']}: no service {host}"
            for service in services:
                assert int(port) in ports[service], f"{service} does not listen on {port}"
                scraped.add((service, int(port)))
    assert ("worker", OpsSettings().port) in scraped
    for name in TRITONS:
        assert (name, TRITON_DEFAULT_PORTS["metrics"]) in scraped
    mounted = {c["target"] for c in SERVICES["prometheus"]["configs"]}
    assert set(config["rule_files"]) <= mounted
    (rules,) = [c for c in SERVICES["prometheus"]["configs"] if c["source"] == "alert-rules"]
    assert COMPOSE["configs"]["alert-rules"]["file"] == "./deploy/observability/alerts.yml"
    assert rules["target"] in config["rule_files"]


def test_the_collector_receives_what_the_worker_sends_and_forwards_it() -> None:
    env, config = worker_env(), collector_config()
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
    grpc = config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    assert port_of(grpc) == port_of(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    pipelines = config["service"]["pipelines"]
    assert "otlp" in pipelines["traces"]["receivers"]
    for pipeline in pipelines.values():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                assert component in config[kind], f"{component} is not defined"
    for exporter in config["exporters"].values():
        host, port = exporter["endpoint"].rsplit(":", 1)
        assert service_called(host) and int(port) in listening_ports()[host]
    (mounted,) = SERVICES["otel-collector"]["configs"]
    assert COMPOSE["configs"][mounted["source"]]["file"] == "./deploy/compose/otel-collector.yaml"
    health = port_of(config["extensions"]["health_check"]["endpoint"])
    assert f":{health}/" in " ".join(SERVICES["otel-collector"]["healthcheck"]["test"])


@pytest.mark.parametrize("name", ["kafka", "kafka-topics"])
def test_shell_scripts_leave_their_variables_to_the_shell(name: str) -> None:
    service = SERVICES[name]
    assert service["entrypoint"] == ["/bin/bash", "-ec"]
    (script,) = service["command"]
    # Compose interpolates $X itself (from the host); the script's own are written $$X.
    assert re.findall(r"(?<!\$)\$(?!\$)", script) == []
    for variable in re.findall(r"\$\$\{?([A-Z_]+)", script):
        assert variable in service["environment"], f"{name}: {variable} is not set"


def test_the_broker_starts_from_the_mounted_properties() -> None:
    kafka = SERVICES["kafka"]
    (mount,) = kafka["volumes"]
    source, target, _ = mount.split(":")
    assert (relative(source) / "server.properties").is_file()
    script = kafka["command"][0]
    assert script.count(f"{target}/server.properties") == 2  # format, then start
    jaas = kafka["environment"]["KAFKA_OPTS"].split("=", 1)[1]
    assert jaas.removeprefix("/run/secrets/") in kafka["secrets"]
    properties = kafka_properties()
    for key in ("ssl.keystore.location", "ssl.truststore.location"):
        assert properties[key].removeprefix("/run/secrets/") in kafka["secrets"]


def test_the_topic_step_creates_every_topic_the_worker_uses() -> None:
    step = SERVICES["kafka-topics"]
    prefix = worker_env()["POCKETVL_KAFKA__TOPIC_PREFIX"]
    assert step["environment"]["TOPICS"].split() == all_topics(prefix)
    max_bytes = KafkaSettings().max_message_bytes
    assert int(step["environment"]["MAX_MESSAGE_BYTES"]) == max_bytes
    assert int(kafka_properties()["message.max.bytes"]) == max_bytes
    assert int(step["environment"]["PARTITIONS"]) >= WORKER["deploy"]["replicas"]
    script = step["command"][0]
    for variable in step["environment"]:
        assert f"$${variable}" in script
    assert "kafka:9093" in script and kafka_properties()["auto.create.topics.enable"] == "false"


@pytest.mark.parametrize("ready", [True, False])
def test_the_worker_healthcheck_follows_readyz(ready: bool) -> None:
    """The healthcheck's own command against a real ops server: 0 while /readyz answers
    200, non-zero on 503."""
    report = Report(checks=(Check("triton", ready),))
    live = Report(checks=())
    server = OpsServer("127.0.0.1", 0, lambda: live, lambda: report, lambda: b"").start()
    try:
        _, python, flag, code = WORKER["healthcheck"]["test"]
        assert (python, flag) == ("python", "-c")
        code = code.replace(f":{OpsSettings().port}/", f":{server.port}/")
        result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True)
    finally:
        server.close()
    assert (result.returncode == 0) is ready
