"""What a production worker refuses to start with (pure: settings in, messages out).

``Settings.mode`` is "production" unless set to "dev" (POCKETVL_MODE=dev; the demo, tests and
``pocketvl worker --stack`` run in dev). In production the worker refuses, with one message
per problem naming the setting to change:

- routes to the tiny random-weight test models, or to a Triton model whose config says it
  serves random weights (``dummy_weights``) or a tiny checkpoint: answers would look valid
  and mean nothing;
- plaintext links to hosts off the loopback (Kafka PLAINTEXT / SASL_PLAINTEXT, ``redis://``,
  Triton without ``ssl``);
- incomplete or contradictory credentials (SASL without its username, password or token
  file; a client certificate without its key; a Redis ACL user without a password; TLS
  files given to a link that does not use TLS).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from urllib.parse import urlsplit

from pocketvl.settings import KafkaSettings, RedisSettings, Route, Settings, TritonSettings
from pocketvl.worker.routing import all_models

TINY_MODEL_PREFIX = "internvl2_tiny_"
TINY_CHECKPOINT_PREFIX = "tiny-internvl2-"
DEV_HINT = "set POCKETVL_MODE=dev to allow this outside production"


def is_loopback(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ::1 (names are not resolved: this is a pure check)."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host(address: str) -> str:
    """The host of ``host:port``, ``[v6]:port`` or a bare host."""
    return urlsplit(f"//{address.strip()}").hostname or address.strip()


def route_problems(routes: Mapping[str, Route]) -> list[str]:
    """Routes (their own models, canaries and fallbacks) to the tiny random-weight models.
    Checked at start-up and again on every reload of ``routing.routes_file``."""
    tiny: dict[str, list[str]] = {}
    for key, route in routes.items():
        for _role, model, checkpoint in all_models(route):
            if model.startswith(TINY_MODEL_PREFIX) or checkpoint.startswith(TINY_CHECKPOINT_PREFIX):
                tiny.setdefault(model, []).append(key)
    return [
        f"routing.routes sends {', '.join(sorted(set(keys)))} to {model}, a tiny random-weight "
        "test model whose answers are meaningless: route them to a real checkpoint's model "
        "(POCKETVL_ROUTING__ROUTES or the routes file)"
        for model, keys in sorted(tiny.items())
    ]


def routed_models(routes: Mapping[str, Route]) -> list[str]:
    """Every Triton model the routes name (own, canary, fallback), sorted."""
    return sorted({model for route in routes.values() for _, model, _ in all_models(route)})


def served_model_problems(model: str, parameters: Mapping[str, str]) -> list[str]:
    """Problems with what Triton says ``model`` serves (its config's string parameters)."""
    problems = []
    if parameters.get("dummy_weights"):
        problems.append(
            f"Triton model {model} serves random weights (config parameter dummy_weights="
            f"{parameters['dummy_weights']!r}): regenerate the model repository without "
            "--dummy-weights, or change routing.routes (POCKETVL_ROUTING__ROUTES)"
        )
    elif parameters.get("checkpoint", "").startswith(TINY_CHECKPOINT_PREFIX):
        problems.append(
            f"Triton model {model} serves the tiny random-weight checkpoint "
            f"{parameters['checkpoint']}: point its config at a real checkpoint, or change "
            "routing.routes (POCKETVL_ROUTING__ROUTES)"
        )
    return problems


def kafka_problems(kafka: KafkaSettings) -> list[str]:
    problems = []
    protocol = kafka.security_protocol
    remote = [h for h in kafka.bootstrap_servers.split(",") if not is_loopback(_host(h))]
    if protocol in ("PLAINTEXT", "SASL_PLAINTEXT") and remote:
        problems.append(
            f"kafka.security_protocol is {protocol}, so traffic to {', '.join(remote)} is not "
            "encrypted: set POCKETVL_KAFKA__SECURITY_PROTOCOL=SSL or SASL_SSL"
        )
    sasl = protocol.startswith("SASL_")
    if sasl and kafka.sasl_mechanism is None:
        problems.append(
            f"kafka.security_protocol is {protocol}: set POCKETVL_KAFKA__SASL_MECHANISM"
        )
    if not sasl and kafka.sasl_mechanism is not None:
        problems.append(
            f"kafka.sasl_mechanism is set but kafka.security_protocol is {protocol}, so it "
            "would be ignored: use SASL_SSL, or unset POCKETVL_KAFKA__SASL_MECHANISM"
        )
    if sasl and kafka.sasl_mechanism == "OAUTHBEARER" and kafka.sasl_oauth_token_file is None:
        problems.append("OAUTHBEARER needs a token: set POCKETVL_KAFKA__SASL_OAUTH_TOKEN_FILE")
    if sasl and kafka.sasl_mechanism not in (None, "OAUTHBEARER"):
        if not kafka.sasl_username:
            problems.append(f"{kafka.sasl_mechanism} needs POCKETVL_KAFKA__SASL_USERNAME")
        if kafka.sasl_password is None:
            problems.append(
                f"{kafka.sasl_mechanism} needs POCKETVL_KAFKA__SASL_PASSWORD "
                "(or POCKETVL_KAFKA__SASL_PASSWORD_FILE)"
            )
    tls_files = [kafka.ssl_cafile, kafka.ssl_certfile, kafka.ssl_keyfile]
    if protocol in ("PLAINTEXT", "SASL_PLAINTEXT") and any(tls_files):
        problems.append(
            f"kafka.ssl_* files are set but kafka.security_protocol is {protocol}, so they "
            "would be ignored: use SSL or SASL_SSL"
        )
    if protocol in ("SSL", "SASL_SSL") and not kafka.ssl_check_hostname:
        problems.append(
            "kafka.ssl_check_hostname is off, so any certificate the CA signed is accepted "
            "for any broker: set POCKETVL_KAFKA__SSL_CHECK_HOSTNAME=true"
        )
    problems += _pair_problems("kafka", kafka.ssl_certfile, kafka.ssl_keyfile, "ssl_")
    return problems


def redis_problems(redis: RedisSettings) -> list[str]:
    problems = []
    parts = urlsplit(redis.url)
    if parts.scheme == "redis" and not is_loopback(parts.hostname or "localhost"):
        problems.append(
            f"redis.url is redis://{parts.hostname}: not encrypted; use rediss:// "
            "(POCKETVL_REDIS__URL) with POCKETVL_REDIS__SSL_CA_FILE"
        )
    if redis.username and redis.password is None:
        problems.append(
            f"redis.username is {redis.username} but no password is set: set "
            "POCKETVL_REDIS__PASSWORD (or POCKETVL_REDIS__PASSWORD_FILE)"
        )
    tls_files = [redis.ssl_ca_file, redis.ssl_certfile, redis.ssl_keyfile]
    if parts.scheme != "rediss" and any(tls_files):
        problems.append(
            "redis.ssl_* files are set but redis.url is not rediss://, so they would be "
            "ignored: use rediss:// in POCKETVL_REDIS__URL"
        )
    if parts.scheme == "rediss" and not redis.ssl_check_hostname:
        problems.append(
            "redis.ssl_check_hostname is off, so any certificate the CA signed is accepted: "
            "set POCKETVL_REDIS__SSL_CHECK_HOSTNAME=true"
        )
    problems += _pair_problems("redis", redis.ssl_certfile, redis.ssl_keyfile, "ssl_")
    return problems


def triton_problems(triton: TritonSettings) -> list[str]:
    problems = []
    if not triton.ssl and not is_loopback(_host(triton.url)):
        problems.append(
            f"triton.ssl is off, so gRPC to {triton.url} is not encrypted: set "
            "POCKETVL_TRITON__SSL=true and POCKETVL_TRITON__SSL_ROOT_CERT"
        )
    tls_files = [triton.ssl_root_cert, triton.ssl_certfile, triton.ssl_keyfile]
    if not triton.ssl and any(tls_files):
        problems.append(
            "triton.ssl_* files are set but triton.ssl is off, so they would be ignored: "
            "set POCKETVL_TRITON__SSL=true"
        )
    problems += _pair_problems("triton", triton.ssl_certfile, triton.ssl_keyfile, "ssl_")
    return problems


def _pair_problems(section: str, cert: object, key: object, prefix: str) -> list[str]:
    env = f"POCKETVL_{section.upper()}__{prefix.upper()}"
    if cert is not None and key is None:
        return [f"{section}.{prefix}certfile is set without its key: set {env}KEYFILE"]
    if key is not None and cert is None:
        return [f"{section}.{prefix}keyfile is set without its certificate: set {env}CERTFILE"]
    return []


def production_problems(settings: Settings) -> list[str]:
    """Why ``settings`` must not run in production; empty in dev mode or when all is well."""
    if settings.mode == "dev":
        return []
    return [
        *route_problems(settings.routing.routes),
        *kafka_problems(settings.kafka),
        *redis_problems(settings.redis),
        *triton_problems(settings.triton),
    ]
