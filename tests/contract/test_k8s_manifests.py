"""deploy/k8s renders, every object is valid for its Kubernetes API model (core, apps, policy,
networking) or for the fields of its custom resource (KEDA, Strimzi, Prometheus operator: small
schemas below), and names, ports, paths and env agree with the code. No cluster here."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from pocketvl.adapters.ops_http import OpsServer
from pocketvl.settings import KafkaSettings, OpsSettings, RoutingSettings
from pocketvl.worker.envelope import all_topics, request_topics
from pocketvl.worker.health import Report
from tests.conftest import REPO
from tests.support.crd_schemas import CRD_SCHEMAS
from tests.support.deployment import (
    ROUTES_FILE,
    TRITON_MODEL_ENV,
    env_problems,
    load_models,
    production_routes,
    repository_models,
    routed_models,
)
from tests.support.kustomize import UnsupportedKustomization, render, validate

K8S = REPO / "deploy" / "k8s"
OBJECTS = render(K8S)
CORE_GROUPS = {"v1", "apps/v1", "policy/v1", "networking.k8s.io/v1"}
# Made outside this kustomization: by Strimzi (the KafkaUser's and the cluster CA's), or by
# the operator from deploy/compose/gen-secrets.sh output (README): Secret -> keys.
EXTERNAL_SECRETS = {
    "pocketvl-worker": {"password"},
    "pocketvl-kafka-cluster-ca-cert": {"ca.crt"},
    "pocketvl-redis-worker": {"password"},
    "pocketvl-ca": {"ca.crt"},
    "pocketvl-redis-tls": {"tls.crt", "tls.key"},
    "pocketvl-redis-acl": {"users.acl"},
    "pocketvl-triton-tls": {"tls.crt", "tls.key"},
}
TRITON_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}  # tritonserver's defaults


def find(kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in OBJECTS if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [o for o in OBJECTS if o["kind"] == kind]


def pod_spec(name: str, kind: str = "Deployment") -> dict[str, Any]:
    spec: dict[str, Any] = find(kind, name)["spec"]["template"]["spec"]
    return spec


def container(name: str, kind: str = "Deployment") -> dict[str, Any]:
    (only,) = pod_spec(name, kind)["containers"]
    found: dict[str, Any] = only
    return found


def worker_env() -> dict[str, str]:
    (source,) = container("pocketvl-worker")["envFrom"]
    data: dict[str, str] = find("ConfigMap", source["configMapRef"]["name"])["data"]
    return data


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def pods_selected(selector: dict[str, str]) -> list[dict[str, Any]]:
    workloads = of_kind("Deployment") + of_kind("StatefulSet")
    return [
        w for w in workloads if labels_match(selector, w["spec"]["template"]["metadata"]["labels"])
    ]


def service_port(service: str, port: int) -> int:
    """The container port a Service's ``port`` lands on (named target ports resolved)."""
    spec = find("Service", service)["spec"]
    (entry,) = [p for p in spec["ports"] if p["port"] == port]
    (workload,) = pods_selected(spec["selector"])
    named = {
        p["name"]: p["containerPort"]
        for c in workload["spec"]["template"]["spec"]["containers"]
        for p in c["ports"]
    }
    target = entry["targetPort"]
    return int(named[target] if isinstance(target, str) else target)


def test_everything_renders_in_the_namespace_with_the_labels() -> None:
    kinds = {o["kind"] for o in OBJECTS}
    assert {"Deployment", "StatefulSet", "Service", "ConfigMap", "PodDisruptionBudget"} <= kinds
    assert {"NetworkPolicy", "ScaledObject", "KafkaTopic", "ServiceMonitor"} <= kinds
    for obj in OBJECTS:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "pocketvl"
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "pocketvl"


@pytest.mark.parametrize(
    "obj",
    [o for o in OBJECTS if o["apiVersion"] in CORE_GROUPS],
    ids=lambda o: f"{o['kind']}/{o['metadata']['name']}",
)
def test_core_objects_match_the_kubernetes_api_models(obj: dict[str, Any]) -> None:
    assert validate(obj) == []


def test_the_validator_refuses_unknown_fields_wrong_types_and_missing_names() -> None:
    deployment = json.loads(json.dumps(find("Deployment", "pocketvl-worker")))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    deployment["spec"]["replicas"] = "2"
    problems = validate(deployment)
    assert any("livenessprobe" in p for p in problems)
    assert any("replicas" in p for p in problems)
    deployment = json.loads(json.dumps(find("Deployment", "pocketvl-worker")))
    del deployment["spec"]["template"]["spec"]["containers"][0]["name"]
    assert any("name" in p for p in validate(deployment))


@pytest.mark.parametrize(
    "obj",
    [o for o in OBJECTS if o["apiVersion"] not in CORE_GROUPS],
    ids=lambda o: f"{o['kind']}/{o['metadata']['name']}",
)
def test_custom_resources_match_their_schemas(obj: dict[str, Any]) -> None:
    schema = CRD_SCHEMAS[(obj["apiVersion"], obj["kind"])]
    jsonschema.validate(obj, schema)


def test_the_renderer_refuses_what_it_does_not_render(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\npatches: []\n")
    with pytest.raises(UnsupportedKustomization):
        render(tmp_path)
    (tmp_path / "kustomization.yaml").write_text("resources: [../outside.yaml]\n")
    with pytest.raises(UnsupportedKustomization):
        render(tmp_path)


def test_the_routes_config_map_is_the_shipped_routing_table() -> None:
    generated = find("ConfigMap", "pocketvl-routes")["data"]["routes.json"]
    assert generated == ROUTES_FILE.read_text()
    routes = RoutingSettings.model_validate({"routes": json.loads(generated)}).routes
    assert {r.triton_model for r in routes.values()} <= repository_models()
    mount = next(m for m in container("pocketvl-worker")["volumeMounts"] if m["name"] == "routes")
    assert worker_env()["POCKETVL_ROUTING__ROUTES_FILE"] == f"{mount['mountPath']}/routes.json"
    assert "subPath" not in mount, "a subPath mount never sees ConfigMap updates"


def test_worker_env_names_are_settings_fields() -> None:
    assert env_problems(n for n in worker_env() if n.startswith("POCKETVL_")) == []
    assert all(n.startswith(("POCKETVL_", "OTEL_")) for n in worker_env())
    assert set(e["name"] for e in container("triton").get("env", [])) <= TRITON_MODEL_ENV


def test_every_file_the_worker_is_given_is_mounted_with_that_key() -> None:
    spec, worker = pod_spec("pocketvl-worker"), container("pocketvl-worker")
    volumes = {v["name"]: v for v in spec["volumes"]}
    files = [v for v in worker_env().values() if v.startswith("/")]
    assert files
    for path in files:
        (mount,) = [m for m in worker["volumeMounts"] if path.startswith(m["mountPath"] + "/")]
        key = path.removeprefix(mount["mountPath"] + "/")
        volume = volumes[mount["name"]]
        if "secret" in volume:
            items = {i["path"]: i["key"] for i in volume["secret"]["items"]}
            assert items[key] in EXTERNAL_SECRETS[volume["secret"]["secretName"]]
        else:
            assert key in find("ConfigMap", volume["configMap"]["name"])["data"]


def test_worker_probes_use_the_ops_server_paths_on_the_ops_port() -> None:
    worker = container("pocketvl-worker")
    (port,) = worker["ports"]
    assert port == {"name": "ops", "containerPort": OpsSettings().port, "protocol": "TCP"}
    assert worker_env()["POCKETVL_OPS__PORT"] == str(OpsSettings().port)
    assert worker["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "ops"}
    assert worker["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ops"}
    assert worker["args"] == ["worker"]


@pytest.fixture
def ops_server() -> Iterator[int]:
    ok = Report(checks=())
    server = OpsServer("127.0.0.1", 0, lambda: ok, lambda: ok, lambda: b"").start()
    yield server.port
    server.close()


def test_the_probe_paths_are_served_by_the_ops_server(ops_server: int) -> None:
    worker = container("pocketvl-worker")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        url = f"http://127.0.0.1:{ops_server}{worker[probe]['httpGet']['path']}"
        with urllib.request.urlopen(url, timeout=5) as answer:
            assert answer.status == 200


def test_worker_runs_locked_down() -> None:
    spec, worker = pod_spec("pocketvl-worker"), container("pocketvl-worker")
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert worker["securityContext"]["readOnlyRootFilesystem"] is True
    assert worker["securityContext"]["allowPrivilegeEscalation"] is False
    assert worker["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert {"requests", "limits"} <= set(worker["resources"])
    pdb = find("PodDisruptionBudget", "pocketvl-worker")["spec"]
    assert pods_selected(pdb["selector"]["matchLabels"]) == [find("Deployment", "pocketvl-worker")]


def test_worker_addresses_are_services_on_their_ports() -> None:
    env = worker_env()
    redis_host, redis_port = env["POCKETVL_REDIS__URL"].split("//")[1].split("/")[0].split(":")
    assert env["POCKETVL_REDIS__URL"].startswith("rediss://")
    assert service_port(redis_host, int(redis_port)) == 6380
    triton_host, triton_port = env["POCKETVL_TRITON__URL"].split(":")
    assert service_port(triton_host, int(triton_port)) == TRITON_PORTS["grpc"]
    assert env["POCKETVL_TRITON__SSL"] == "true"
    assert "--grpc-use-ssl=true" in container("triton")["args"]
    cluster = {t["metadata"]["labels"]["strimzi.io/cluster"] for t in of_kind("KafkaTopic")}
    (name,) = cluster
    assert env["POCKETVL_KAFKA__BOOTSTRAP_SERVERS"] == f"{name}-kafka-bootstrap:9093"
    assert find("KafkaUser", env["POCKETVL_KAFKA__SASL_USERNAME"])
    assert env["POCKETVL_KAFKA__SASL_MECHANISM"] == "SCRAM-SHA-512"
    user = find("KafkaUser", env["POCKETVL_KAFKA__SASL_USERNAME"])["spec"]
    assert user["authentication"]["type"] == "scram-sha-512"


def test_triton_serves_the_routed_models_from_the_volume_on_a_gpu() -> None:
    triton, spec = container("triton"), pod_spec("triton")
    loaded = load_models(triton["args"])
    assert sorted(loaded) == sorted(routed_models())
    assert "--model-control-mode=explicit" in triton["args"]
    assert {p["name"]: p["containerPort"] for p in triton["ports"]} == TRITON_PORTS
    assert triton["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert triton["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == "1"
    (store,) = [v for v in spec["volumes"] if "persistentVolumeClaim" in v]
    assert find("PersistentVolumeClaim", store["persistentVolumeClaim"]["claimName"])
    (mount,) = [m for m in triton["volumeMounts"] if m["name"] == store["name"]]
    repository = next(a for a in triton["args"] if a.startswith("--model-repository="))
    assert repository.split("=", 1)[1].startswith(mount["mountPath"] + "/")
    (checkpoints,) = [e["value"] for e in triton["env"] if e["name"] == "POCKETVL_CHECKPOINT_DIR"]
    assert checkpoints.startswith(mount["mountPath"] + "/")
    assert any(m["mountPath"] == "/dev/shm" for m in triton["volumeMounts"])
    for name, port in TRITON_PORTS.items():
        assert service_port("triton", port) == port, name


def test_topics_are_exactly_the_worker_topics() -> None:
    prefix = worker_env()["POCKETVL_KAFKA__TOPIC_PREFIX"]
    topics = of_kind("KafkaTopic")
    assert sorted(t["spec"].get("topicName", t["metadata"]["name"]) for t in topics) == sorted(
        all_topics(prefix)
    )
    for topic in topics:
        assert topic["spec"]["config"]["max.message.bytes"] == KafkaSettings().max_message_bytes
        assert (
            topic["spec"]["partitions"]
            >= find("ScaledObject", "pocketvl-worker")["spec"]["maxReplicaCount"]
        )
    user = find("KafkaUser", worker_env()["POCKETVL_KAFKA__SASL_USERNAME"])["spec"]
    acls = {(a["resource"]["type"], a["resource"]["name"]) for a in user["authorization"]["acls"]}
    assert ("topic", f"{prefix}.") in acls
    assert ("group", worker_env()["POCKETVL_KAFKA__GROUP_ID"]) in acls


def test_keda_scales_the_worker_on_its_own_group_lag() -> None:
    env = worker_env()
    scaled = find("ScaledObject", "pocketvl-worker")["spec"]
    assert find("Deployment", scaled["scaleTargetRef"]["name"])
    triggers = scaled["triggers"]
    assert sorted(t["metadata"]["topic"] for t in triggers) == sorted(
        request_topics(env["POCKETVL_KAFKA__TOPIC_PREFIX"])
    )
    for trigger in triggers:
        meta = trigger["metadata"]
        assert meta["consumerGroup"] == env["POCKETVL_KAFKA__GROUP_ID"]
        assert meta["bootstrapServers"] == env["POCKETVL_KAFKA__BOOTSTRAP_SERVERS"]
        assert int(meta["lagThreshold"]) > 0
        assert meta["sasl"] == "scram_sha512" and meta["tls"] == "enable"
        auth = find("TriggerAuthentication", trigger["authenticationRef"]["name"])["spec"]
        for ref in auth["secretTargetRef"]:
            assert ref["key"] in EXTERNAL_SECRETS[ref["name"]]
        for ref in auth.get("env", []):
            assert ref["name"] in env
            assert ref["containerName"] == container("pocketvl-worker")["name"]
    assert 1 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"]


def _peers_ports(rules: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for rule in rules:
        peers = rule.get("to", rule.get("from", []))
        for port in rule["ports"]:
            out.setdefault(port["port"], []).extend(peers)
    return out


def test_worker_network_policy_allows_only_its_dependencies() -> None:
    worker_labels = find("Deployment", "pocketvl-worker")["spec"]["template"]["metadata"]["labels"]
    policies = [
        p["spec"]
        for p in of_kind("NetworkPolicy")
        if labels_match(p["spec"]["podSelector"]["matchLabels"], worker_labels)
    ]
    assert any(
        set(p["policyTypes"]) == {"Ingress", "Egress"} and "ingress" not in p and "egress" not in p
        for p in policies
    ), "no default deny for the worker"
    egress = _peers_ports([r for p in policies for r in p.get("egress", [])])
    assert set(egress) == {9093, 6380, 8001, 4317, 53}
    otlp = worker_env()["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert otlp.endswith(":4317") and ".observability." in otlp
    for port, service in ((6380, "redis"), (8001, "triton")):
        (peer,) = egress[port]
        selected = pods_selected(peer["podSelector"]["matchLabels"])
        assert selected == pods_selected(find("Service", service)["spec"]["selector"])
        assert service_port(service, port) == port
    (kafka,) = egress[9093]
    assert kafka["podSelector"]["matchLabels"]["strimzi.io/cluster"] == "pocketvl-kafka"
    ingress = _peers_ports([r for p in policies for r in p.get("ingress", [])])
    assert set(ingress) == {OpsSettings().port}
    for peer in ingress[OpsSettings().port]:
        assert peer["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": "monitoring"
        }


def test_service_monitors_scrape_named_service_ports() -> None:
    for monitor in of_kind("ServiceMonitor"):
        spec = monitor["spec"]
        services = [
            s
            for s in of_kind("Service")
            if labels_match(spec["selector"]["matchLabels"], s["metadata"]["labels"])
        ]
        assert services, monitor["metadata"]["name"]
        for endpoint in spec["endpoints"]:
            for service in services:
                assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
            assert endpoint["path"] == "/metrics"
    scraped = {
        m["metadata"]["name"]: m["spec"]["endpoints"][0]["port"] for m in of_kind("ServiceMonitor")
    }
    assert scraped == {"pocketvl-worker": "ops", "triton": "metrics"}


def test_services_select_pods_and_target_declared_ports() -> None:
    for service in of_kind("Service"):
        spec = service["spec"]
        assert pods_selected(spec["selector"]), service["metadata"]["name"]
        for port in spec["ports"]:
            service_port(service["metadata"]["name"], port["port"])


def test_triton_runs_with_the_compose_flags() -> None:
    """One set of Triton flags (the integration test starts Triton with compose's)."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    files = {"triton-tls/tls.crt": "triton_cert.pem", "triton-tls/tls.key": "triton_key.pem"}

    def flags(args: list[str]) -> list[str]:
        for mounted, name in files.items():
            args = [a.replace(mounted, name) for a in args]
        return [a for a in args if not a.startswith("--model-repository=")]

    assert flags(container("triton")["args"]) == flags(compose["services"]["triton-gpu"]["command"])


def test_the_model_store_job_fills_what_triton_reads() -> None:
    """deploy/k8s/model-store-job.yaml (applied on its own): a valid Job that writes the GPU
    repository Triton is pointed at and fetches exactly the routed checkpoints."""
    (job,) = [o for o in yaml.safe_load_all((K8S / "model-store-job.yaml").read_text()) if o]
    assert validate(job) == []
    spec = job["spec"]["template"]["spec"]
    (init,) = spec["containers"]
    env = {e["name"]: e["value"] for e in init["env"]}
    assert set(env["CHECKPOINTS"].split()) == {r.checkpoint for r in production_routes().values()}
    (store,) = [v for v in spec["volumes"] if "persistentVolumeClaim" in v]
    assert store == {
        "name": "model-store",
        "persistentVolumeClaim": {"claimName": "pocketvl-model-store"},
    }
    script = " ".join(init["args"][0].replace("\\\n", " ").split())
    triton = container("triton")
    repository = next(a for a in triton["args"] if a.startswith("--model-repository="))
    assert f"--out {repository.split('=', 1)[1]}" in script
    (checkpoints,) = [e["value"] for e in triton["env"] if e["name"] == "POCKETVL_CHECKPOINT_DIR"]
    assert f"--dest {checkpoints}" in script
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    args = compose["services"]["triton-gpu"]["build"]["args"]
    assert f"--kind {args['MODEL_KIND']} --dtype {args['MODEL_DTYPE']}" in script
    assert init["image"] == container("triton")["image"]
