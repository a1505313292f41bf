"""InternVL2 conversation templates, as the DA checkpoints were trained (each checkpoint's
``config.json`` names its ``template``).

MPT style: system block + separator, then ``role + message + separator`` per turn, and the
generation prompt ends with the assistant role. No newline follows the separator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

IMG_START = "<img>"
IMG_END = "</img>"
IMG_CONTEXT = "<IMG_CONTEXT>"
IMAGE_PLACEHOLDER = "<image>"
# InternVL's special tokens, added to every LLM tokenizer.
INTERNVL_SPECIAL_TOKENS = (
    IMG_START,
    IMG_END,
    IMG_CONTEXT,
    "<quad>",
    "</quad>",
    "<ref>",
    "</ref>",
    "<box>",
    "</box>",
)
SYSTEM_MESSAGE = (
    "你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，英文名叫InternVL, "
    "是一个有用无害的人工智能助手。"
)


@dataclass(frozen=True)
class Template:
    name: str
    system: str
    user: str
    assistant: str
    separator: str

    def render(self, user_message: str, system_message: str = SYSTEM_MESSAGE) -> str:
        return (
            f"{self.system}{system_message}{self.separator}"
            f"{self.user}{user_message}{self.separator}{self.assistant}"
        )


_CHATML = {
    "system": "<|im_start|>system\n",
    "user": "<|im_start|>user\n",
    "assistant": "<|im_start|>assistant\n",
    "separator": "<|im_end|>",
}
TEMPLATES = {
    "Hermes-2": Template(name="Hermes-2", **_CHATML),
    "internlm2-chat": Template(name="internlm2-chat", **_CHATML),
    "phi3-chat": Template(
        name="phi3-chat",
        system="<|system|>\n",
        user="<|user|>\n",
        assistant="<|assistant|>\n",
        separator="<|end|>",
    ),
}


# The LLM behind each Mini-InternVL2 size, and the conversation template it was trained with.
Backbone = Literal["qwen2", "internlm2", "phi3"]
SIZE_BACKBONES: dict[str, Backbone] = {"1b": "qwen2", "2b": "internlm2", "4b": "phi3"}
BACKBONE_TEMPLATES: dict[Backbone, str] = {
    "qwen2": "Hermes-2",
    "internlm2": "internlm2-chat",
    "phi3": "phi3-chat",
}


def image_prefix(num_images: int) -> str:
    """Placeholders before the question: one image, or ``Image-1: <image>`` lines for several."""
    if num_images == 1:
        return f"{IMAGE_PLACEHOLDER}\n"
    return "".join(f"Image-{i}: {IMAGE_PLACEHOLDER}\n" for i in range(1, num_images + 1))


def expand_image_placeholders(text: str, tiles_per_image: list[int], tokens_per_tile: int) -> str:
    """Replace each ``<image>`` in order with ``<img>`` + context tokens + ``</img>``."""
    if text.count(IMAGE_PLACEHOLDER) != len(tiles_per_image):
        raise ValueError(
            f"prompt has {text.count(IMAGE_PLACEHOLDER)} <image> placeholders "
            f"for {len(tiles_per_image)} images"
        )
    for tiles in tiles_per_image:
        span = IMG_START + IMG_CONTEXT * (tokens_per_tile * tiles) + IMG_END
        text = text.replace(IMAGE_PLACEHOLDER, span, 1)
    return text


def build_prompt(
    template: Template, question: str, tiles_per_image: list[int], tokens_per_tile: int = 256
) -> str:
    """The full generation prompt for a question about one or more tiled images."""
    if IMAGE_PLACEHOLDER in question:
        user = question
    else:
        user = image_prefix(len(tiles_per_image)) + question
    return expand_image_placeholders(template.render(user), tiles_per_image, tokens_per_tile)
