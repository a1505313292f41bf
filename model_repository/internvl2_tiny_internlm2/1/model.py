"""Generated Triton shell: the logic lives in pocketvl.serving.triton_model."""

from pocketvl.serving.triton_model import TritonPythonModel

__all__ = ["TritonPythonModel"]
