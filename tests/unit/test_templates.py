"""Golden prompt strings: the exact text each template puts in front of the LLM."""

from __future__ import annotations

import pytest

from pocketvl.vision.templates import SYSTEM_MESSAGE, TEMPLATES, build_prompt

CTX2 = "<img><IMG_CONTEXT><IMG_CONTEXT></img>"


def test_hermes2_golden() -> None:
    prompt = build_prompt(TEMPLATES["Hermes-2"], "What is this?", [1], tokens_per_tile=2)
    assert prompt == (
        f"<|im_start|>system\n{SYSTEM_MESSAGE}<|im_end|>"
        f"<|im_start|>user\n{CTX2}\nWhat is this?<|im_end|><|im_start|>assistant\n"
    )


def test_internlm2_chat_golden() -> None:
    prompt = build_prompt(TEMPLATES["internlm2-chat"], "Q", [1], tokens_per_tile=2)
    assert prompt == (
        f"<|im_start|>system\n{SYSTEM_MESSAGE}<|im_end|>"
        f"<|im_start|>user\n{CTX2}\nQ<|im_end|><|im_start|>assistant\n"
    )


def test_phi3_chat_golden() -> None:
    prompt = build_prompt(TEMPLATES["phi3-chat"], "Q", [1], tokens_per_tile=2)
    assert prompt == (
        f"<|system|>\n{SYSTEM_MESSAGE}<|end|><|user|>\n{CTX2}\nQ<|end|><|assistant|>\n"
    )


def test_several_images_are_numbered_and_sized_by_their_tiles() -> None:
    prompt = build_prompt(TEMPLATES["Hermes-2"], "Compare.", [2, 1], tokens_per_tile=1)
    assert (
        "user\nImage-1: <img><IMG_CONTEXT><IMG_CONTEXT></img>\n"
        "Image-2: <img><IMG_CONTEXT></img>\nCompare.<|im_end|>"
    ) in prompt


def test_tokens_per_tile_default_is_256() -> None:
    prompt = build_prompt(TEMPLATES["Hermes-2"], "Q", [13])
    assert prompt.count("<IMG_CONTEXT>") == 13 * 256


def test_placeholder_count_must_match_images() -> None:
    with pytest.raises(ValueError, match="placeholders"):
        build_prompt(TEMPLATES["Hermes-2"], "<image>\n<image>\nQ", [1])
