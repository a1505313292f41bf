"""The fields deploy/k8s uses of three operators' custom resources, as JSON Schemas: a
subset of each CRD's schema (KEDA 2.x keda.sh/v1alpha1, Strimzi kafka.strimzi.io/v1beta2,
Prometheus operator monitoring.coreos.com/v1), written from their documentation. Unknown
fields are refused, so a misspelt field fails here as the API server would refuse it."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]


def strict(properties: Schema, required: tuple[str, ...] = ()) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


STRING: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
LABELS: Schema = {"type": "object", "additionalProperties": STRING}
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
METADATA = strict(
    {
        "name": {"type": "string", "pattern": DNS_SUBDOMAIN, "maxLength": 253},
        "namespace": STRING,
        "labels": LABELS,
        "annotations": LABELS,
    },
    ("name",),
)


def resource(api_version: str, kind: str, spec: Schema) -> Schema:
    return strict(
        {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": METADATA,
            "spec": spec,
        },
        ("apiVersion", "kind", "metadata", "spec"),
    )


KAFKA_TRIGGER_METADATA = strict(
    {
        "bootstrapServers": STRING,
        "consumerGroup": STRING,
        "topic": STRING,
        "lagThreshold": {"type": "string", "pattern": r"^[0-9]+$"},
        "activationLagThreshold": {"type": "string", "pattern": r"^[0-9]+$"},
        "offsetResetPolicy": {"enum": ["earliest", "latest"]},
        "allowIdleConsumers": {"enum": ["true", "false"]},
        "excludePersistentLag": {"enum": ["true", "false"]},
        "limitToPartitionsWithLag": {"enum": ["true", "false"]},
        "sasl": {"enum": ["none", "plaintext", "scram_sha256", "scram_sha512", "oauthbearer"]},
        "tls": {"enum": ["enable", "disable"]},
    },
    ("bootstrapServers", "consumerGroup", "lagThreshold"),
)

SCALED_OBJECT = resource(
    "keda.sh/v1alpha1",
    "ScaledObject",
    strict(
        {
            "scaleTargetRef": strict(
                {"name": STRING, "kind": STRING, "apiVersion": STRING}, ("name",)
            ),
            "minReplicaCount": {"type": "integer", "minimum": 0},
            "maxReplicaCount": {"type": "integer", "minimum": 1},
            "pollingInterval": INT,
            "cooldownPeriod": INT,
            "triggers": {
                "type": "array",
                "minItems": 1,
                "items": strict(
                    {
                        "type": {"const": "kafka"},
                        "metadata": KAFKA_TRIGGER_METADATA,
                        "authenticationRef": strict({"name": STRING}, ("name",)),
                    },
                    ("type", "metadata"),
                ),
            },
        },
        ("scaleTargetRef", "triggers"),
    ),
)

KAFKA_AUTH_PARAMETERS = {"sasl", "username", "password", "tls", "ca", "cert", "key", "keyPassword"}
TRIGGER_AUTHENTICATION = resource(
    "keda.sh/v1alpha1",
    "TriggerAuthentication",
    strict(
        {
            "secretTargetRef": {
                "type": "array",
                "items": strict(
                    {
                        "parameter": {"enum": sorted(KAFKA_AUTH_PARAMETERS)},
                        "name": STRING,
                        "key": STRING,
                    },
                    ("parameter", "name", "key"),
                ),
            },
            "env": {
                "type": "array",
                "items": strict(
                    {
                        "parameter": {"enum": sorted(KAFKA_AUTH_PARAMETERS)},
                        "name": STRING,
                        "containerName": STRING,
                    },
                    ("parameter", "name"),
                ),
            },
        }
    ),
)

KAFKA_TOPIC = resource(
    "kafka.strimzi.io/v1beta2",
    "KafkaTopic",
    strict(
        {
            "topicName": {"type": "string", "pattern": r"^[A-Za-z0-9._-]{1,249}$"},
            "partitions": {"type": "integer", "minimum": 1},
            "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
            "config": {"type": "object", "additionalProperties": {"type": ["string", "integer"]}},
        },
        ("partitions", "replicas"),
    ),
)

ACL_RULE = strict(
    {
        "resource": strict(
            {
                "type": {"enum": ["topic", "group", "cluster", "transactionalId"]},
                "name": STRING,
                "patternType": {"enum": ["literal", "prefix"]},
            },
            ("type",),
        ),
        "operations": {
            "type": "array",
            "items": {
                "enum": [
                    "Read",
                    "Write",
                    "Create",
                    "Delete",
                    "Alter",
                    "Describe",
                    "ClusterAction",
                    "AlterConfigs",
                    "DescribeConfigs",
                    "IdempotentWrite",
                    "All",
                ]
            },
        },
        "host": STRING,
        "type": {"enum": ["allow", "deny"]},
    },
    ("resource", "operations"),
)

KAFKA_USER = resource(
    "kafka.strimzi.io/v1beta2",
    "KafkaUser",
    strict(
        {
            "authentication": strict(
                {"type": {"enum": ["tls", "tls-external", "scram-sha-512"]}}, ("type",)
            ),
            "authorization": strict(
                {"type": {"const": "simple"}, "acls": {"type": "array", "items": ACL_RULE}},
                ("type", "acls"),
            ),
        }
    ),
)

SERVICE_MONITOR = resource(
    "monitoring.coreos.com/v1",
    "ServiceMonitor",
    strict(
        {
            "selector": strict({"matchLabels": LABELS}, ("matchLabels",)),
            "namespaceSelector": strict({"matchNames": {"type": "array", "items": STRING}}),
            "endpoints": {
                "type": "array",
                "minItems": 1,
                "items": strict(
                    {"port": STRING, "path": STRING, "interval": STRING, "scheme": STRING},
                    ("port",),
                ),
            },
        },
        ("selector", "endpoints"),
    ),
)

CRD_SCHEMAS: dict[tuple[str, str], Schema] = {
    ("keda.sh/v1alpha1", "ScaledObject"): SCALED_OBJECT,
    ("keda.sh/v1alpha1", "TriggerAuthentication"): TRIGGER_AUTHENTICATION,
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): KAFKA_TOPIC,
    ("kafka.strimzi.io/v1beta2", "KafkaUser"): KAFKA_USER,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR,
}
