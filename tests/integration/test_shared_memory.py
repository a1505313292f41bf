"""Pixels through system shared memory on the real local Triton: the same answers as inside
the gRPC message, regions registered while used and gone after close, and a region Triton
forgot (as after a restart) registered again without failing the request."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from pocketvl.adapters.triton_client import TritonInference
from pocketvl.devstack.paths import TINY_MODELS
from pocketvl.errors import InferenceUnavailable
from pocketvl.settings import Settings
from tests.integration.test_triton_models import IMAGES, ask

pytestmark = pytest.mark.integration
MODEL = TINY_MODELS[0]


def shared(settings: Settings) -> TritonInference:
    return TritonInference(settings.triton.model_copy(update={"shared_memory": True}))


def registered(triton: TritonInference) -> set[str]:
    status = triton.client.get_system_shared_memory_status(as_json=True)
    return {str(region["name"]) for region in status.get("regions", {}).values()}


def test_answers_through_shared_memory_equal_answers_in_the_message(settings: Settings) -> None:
    plain, through = TritonInference(settings.triton), shared(settings)
    expected = [ask(plain, MODEL, i) for i in range(len(IMAGES))]
    with ThreadPoolExecutor(max_workers=len(IMAGES)) as pool:
        got = list(pool.map(lambda i: ask(through, MODEL, i), range(len(IMAGES))))
    assert got == expected
    assert through.shared is not None
    ours = {name for name in registered(through) if name.startswith(through.shared._prefix)}
    assert 1 <= len(ours) <= len(IMAGES) == through.shared.regions()  # one per request in flight
    through.close()
    assert not ours & registered(plain)  # unregistered on close
    plain.close()


def test_a_region_triton_forgot_is_registered_again(settings: Settings) -> None:
    triton = shared(settings)
    first = ask(triton, MODEL, 0)
    assert triton.shared is not None
    for name in registered(triton):
        if name.startswith(triton.shared._prefix):
            triton.client.unregister_system_shared_memory(name)  # as a restarted Triton
    assert ask(triton, MODEL, 0) == first
    assert any(n.startswith(triton.shared._prefix) for n in registered(triton))
    triton.close()


def test_a_region_triton_cannot_map_holds_the_request_back_with_what_to_fix(
    settings: Settings,
) -> None:
    """As with a Triton on another host: the key is not in the /dev/shm Triton sees."""
    triton = shared(settings)
    with pytest.raises(InferenceUnavailable) as caught:
        triton._register_region("pocketvl_missing", "/pocketvl_no_such_region", 4096)
    assert caught.value.reason == "model_unavailable"  # retried, never dead-lettered
    assert "same host or shared IPC" in str(caught.value)
    triton.close()


def test_a_triton_that_is_down_is_an_outage_not_a_mapping_problem(settings: Settings) -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = settings.triton.model_copy(
        update={"url": f"127.0.0.1:{port}", "shared_memory": True, "timeout_s": 5}
    )
    triton = TritonInference(down)
    with pytest.raises(InferenceUnavailable) as caught:
        ask(triton, MODEL, 0)
    assert caught.value.reason == "model_unavailable"
    assert "UNAVAILABLE" in str(caught.value) and "map" not in str(caught.value)
    triton.close()
