"""Names the pinned TensorRT-LLM release knows, for checking what our generator writes.

Read from the NVIDIA/TensorRT-LLM sources (facts only; no code copied):

* ``LLM_INPUTS`` / ``LLM_OUTPUTS`` / ``LLM_PARAMETERS``:
  ``triton_backend/all_models/inflight_batcher_llm/tensorrt_llm/config.pbtxt`` at commit
  0c8de69a1ca6213eebb20a51873890ff128666c2, whose ``tensorrt_llm/version.py`` says 1.2.0rc8.
  The pin is 1.2.1 (``modeltools/trtllm_repository.py``); the v1.2.1 tag itself was not
  readable here, so these are the names of the closest release candidate we could read.
  Types are the file's; ``${...}`` placeholders are listed as the choices we fill in.
* ``TRTLLM_BUILD_FLAGS``: ``tensorrt_llm/commands/build.py`` (``parse_arguments``) plus the
  plugin flags we pass (``--gemm_plugin``, ``--use_paged_context_fmha``) that
  ``tensorrt_llm/plugin/plugin.py`` adds through ``add_plugin_argument``.
* ``MULTIMODAL_BUILDER_FLAGS``: ``tensorrt_llm/tools/multimodal_builder.py``
  (``add_multimodal_arguments``), used by
  ``examples/models/core/multimodal/build_multimodal_engine.py``; its ``export_onnx``
  defaults name the vision tensors ``input`` / ``encoder_output``.
* ``CONVERTER_SCRIPTS``: ``examples/models/core/{qwen,internlm2,phi}/convert_checkpoint.py``
  exist in the stored snapshot; ``examples/models/core/multimodal/README.md`` (InternVL2
  section) maps InternVL2-1B -> qwen, 2B -> internlm2, 4B -> phi.
"""

from __future__ import annotations

RELEASE = "1.2.0rc8 (commit 0c8de69a), standing in for the pinned 1.2.1"

# name -> (data type, dims without batch); prompt_embedding_table's type is a placeholder
# upstream (${prompt_embedding_table_data_type}): TYPE_FP16 or TYPE_BF16.
LLM_INPUTS: dict[str, tuple[frozenset[str], tuple[int, ...]]] = {
    "input_ids": (frozenset({"TYPE_INT32"}), (-1,)),
    "input_lengths": (frozenset({"TYPE_INT32"}), (1,)),
    "request_output_len": (frozenset({"TYPE_INT32"}), (1,)),
    "end_id": (frozenset({"TYPE_INT32"}), (1,)),
    "pad_id": (frozenset({"TYPE_INT32"}), (1,)),
    "stop_words_list": (frozenset({"TYPE_INT32"}), (2, -1)),
    "bad_words_list": (frozenset({"TYPE_INT32"}), (2, -1)),
    "beam_width": (frozenset({"TYPE_INT32"}), (1,)),
    "temperature": (frozenset({"TYPE_FP32"}), (1,)),
    "runtime_top_k": (frozenset({"TYPE_INT32"}), (1,)),
    "runtime_top_p": (frozenset({"TYPE_FP32"}), (1,)),
    "repetition_penalty": (frozenset({"TYPE_FP32"}), (1,)),
    "seed": (frozenset({"TYPE_UINT64"}), (1,)),
    "return_perf_metrics": (frozenset({"TYPE_BOOL"}), (1,)),
    "exclude_input_in_output": (frozenset({"TYPE_BOOL"}), (1,)),
    "stop": (frozenset({"TYPE_BOOL"}), (1,)),
    "streaming": (frozenset({"TYPE_BOOL"}), (1,)),
    "prompt_embedding_table": (frozenset({"TYPE_FP16", "TYPE_BF16"}), (-1, -1)),
    "prompt_table_extra_ids": (frozenset({"TYPE_UINT64"}), (-1,)),
    "prompt_vocab_size": (frozenset({"TYPE_INT32"}), (1,)),
}
# Inputs the upstream file does not mark optional.
LLM_REQUIRED_INPUTS = frozenset({"input_lengths", "request_output_len"})

LLM_OUTPUTS: dict[str, tuple[str, tuple[int, ...]]] = {
    "output_ids": ("TYPE_INT32", (-1, -1)),
    "sequence_length": ("TYPE_INT32", (-1,)),
    "cum_log_probs": ("TYPE_FP32", (-1,)),
    "output_log_probs": ("TYPE_FP32", (-1, -1)),
    "num_input_tokens": ("TYPE_INT32", (1,)),
    "num_output_tokens": ("TYPE_INT32", (1,)),
}

LLM_PARAMETERS = frozenset(
    {
        "max_beam_width",
        "FORCE_CPU_ONLY_INPUT_TENSORS",
        "gpt_model_type",
        "gpt_model_path",
        "encoder_model_path",
        "max_tokens_in_paged_kv_cache",
        "max_attention_window_size",
        "sink_token_length",
        "batch_scheduler_policy",
        "kv_cache_free_gpu_mem_fraction",
        "cross_kv_cache_fraction",
        "kv_cache_host_memory_bytes",
        "kv_cache_onboard_blocks",
        "enable_trt_overlap",
        "exclude_input_in_output",
        "cancellation_check_period_ms",
        "stats_check_period_ms",
        "iter_stats_max_iterations",
        "request_stats_max_iterations",
        "enable_kv_cache_reuse",
        "normalize_log_probs",
        "enable_chunked_context",
        "gpu_device_ids",
        "participant_ids",
        "num_nodes",
        "lora_cache_optimal_adapter_size",
        "lora_cache_max_adapter_size",
        "lora_cache_gpu_memory_fraction",
        "lora_cache_host_memory_bytes",
        "lora_prefetch_dir",
        "decoding_mode",
        "executor_worker_path",
        "lookahead_window_size",
        "lookahead_ngram_size",
        "lookahead_verification_set_size",
        "medusa_choices",
        "eagle_choices",
        "gpu_weights_percent",
        "enable_context_fmha_fp32_acc",
        "multi_block_mode",
        "cuda_graph_mode",
        "cuda_graph_cache_size",
        "speculative_decoding_fast_logits",
        "tokenizer_dir",
        "guided_decoding_backend",
        "xgrammar_tokenizer_info_path",
    }
)
# Values the upstream docs give for the enumerated parameters we set
# (streaming_anchors.md §4.2, from tensorrtllm_backend docs/model_config.md).
LLM_PARAMETER_VALUES = {
    "gpt_model_type": frozenset({"inflight_fused_batching", "V1"}),
    "batch_scheduler_policy": frozenset({"guaranteed_no_evict", "max_utilization"}),
}

TRTLLM_BUILD_FLAGS = frozenset(
    {
        "--checkpoint_dir",
        "--output_dir",
        "--max_batch_size",
        "--max_input_len",
        "--max_seq_len",
        "--max_beam_width",
        "--max_num_tokens",
        "--opt_num_tokens",
        "--max_prompt_embedding_table_size",
        "--max_multimodal_len",
        "--kv_cache_type",
        "--workers",
        "--gemm_plugin",
        "--use_paged_context_fmha",
    }
)
MULTIMODAL_BUILDER_FLAGS = frozenset(
    {"--model_type", "--model_path", "--output_dir", "--max_batch_size"}
)
MULTIMODAL_MODEL_TYPES = frozenset({"internvl"})  # the one we use, of the builder's choices
CONVERTER_SCRIPTS = frozenset(
    {
        "examples/models/core/qwen/convert_checkpoint.py",
        "examples/models/core/internlm2/convert_checkpoint.py",
        "examples/models/core/phi/convert_checkpoint.py",
        "examples/models/core/multimodal/build_multimodal_engine.py",
    }
)
CONVERTER_FLAGS = frozenset({"--model_dir", "--output_dir", "--dtype"})
