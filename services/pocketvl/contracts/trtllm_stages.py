"""Tensors that the ``trtllm`` engine's stages pass to each other (see ``docs/trtllm.md``).

The BLS model faces the worker with the contract in ``triton.py``; behind it, it calls the
vision plan and the ``tensorrt_llm`` backend with these. The vision names are the ones
TensorRT-LLM's multimodal builder gives its ONNX export; the LLM names and types are the
``tensorrt_llm`` backend's (a test checks them against the pinned release's list).
"""

from __future__ import annotations

VISION_INPUT = "input"  # FP16 [tiles, 3, 448, 448]
VISION_OUTPUT = "encoder_output"  # FP16 [tiles, 256, LLM hidden]

# name -> (config.pbtxt type, dims without the batch dimension, optional)
LLM_INPUTS: dict[str, tuple[str, tuple[int, ...], bool]] = {
    "input_ids": ("TYPE_INT32", (-1,), True),  # optional upstream (encoder-only models)
    "input_lengths": ("TYPE_INT32", (1,), False),
    "request_output_len": ("TYPE_INT32", (1,), False),
    "end_id": ("TYPE_INT32", (1,), True),
    "pad_id": ("TYPE_INT32", (1,), True),
    "stop_words_list": ("TYPE_INT32", (2, -1), True),
    "beam_width": ("TYPE_INT32", (1,), True),
    "runtime_top_k": ("TYPE_INT32", (1,), True),
    "prompt_embedding_table": ("TYPE_FP16", (-1, -1), True),
    "prompt_vocab_size": ("TYPE_INT32", (1,), True),
    "prompt_table_extra_ids": ("TYPE_UINT64", (-1,), True),
    "exclude_input_in_output": ("TYPE_BOOL", (1,), True),
}
LLM_OUTPUTS: dict[str, tuple[str, tuple[int, ...]]] = {
    "output_ids": ("TYPE_INT32", (-1, -1)),  # [beams, tokens]
    "sequence_length": ("TYPE_INT32", (-1,)),  # [beams]
}
# config.pbtxt type -> the numpy dtype the BLS sends
NUMPY_TYPES = {
    "TYPE_INT32": "int32",
    "TYPE_UINT64": "uint64",
    "TYPE_FP16": "float16",
    "TYPE_BOOL": "bool",
}
