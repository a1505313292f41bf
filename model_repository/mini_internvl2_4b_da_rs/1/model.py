"""Generated Triton shell: the logic lives in pocketvl.internvl.triton_model."""

from pocketvl.internvl.triton_model import TritonPythonModel

__all__ = ["TritonPythonModel"]
