"""Loading the vendored MediaPipe ``.tflite`` models with ai-edge-litert."""

from __future__ import annotations

import os

import numpy as np

import third_party.mediapipe as _vendored  # the package data holding the .tflite files
from talkjax.errors import CheckpointError

MODEL_DIR = os.path.dirname(os.path.abspath(_vendored.__file__))
SHORT_RANGE = "face_detection_short_range.tflite"
FULL_RANGE = "face_detection_full_range.tflite"
FACE_LANDMARK = "face_landmark.tflite"


def model_path(name: str) -> str:
  """Absolute path of a vendored model file (``third_party/mediapipe/<name>``)."""
  return os.path.join(MODEL_DIR, name)


class TfliteModel:
  """A single-input TFLite model: ``model(x)`` -> list of outputs in the model's output order.

  Args:
    path: the ``.tflite`` file.
    input_shape: the expected input shape; a file whose input differs is rejected.
    num_outputs: the expected number of outputs.
    num_threads: interpreter threads (None: the runtime's default).
  """

  def __init__(self, path: str, input_shape: tuple[int, ...], num_outputs: int,
               num_threads: int | None = None):
    # Imported here so that importing talkjax.faces stays cheap for code that only crops/pastes.
    from ai_edge_litert.interpreter import Interpreter

    self.path = path
    if not os.path.isfile(path):
      raise CheckpointError(f"{path}: MediaPipe model file not found")
    try:
      self._interp = Interpreter(model_path=path, num_threads=num_threads)
      self._interp.allocate_tensors()
    except Exception as e:  # the runtime raises RuntimeError/ValueError with its own wording
      raise CheckpointError(f"{path}: not a loadable TFLite model ({e})") from e
    inputs = self._interp.get_input_details()
    outputs = self._interp.get_output_details()
    shape = lambda d: tuple(int(v) for v in d["shape"])  # noqa: E731
    if len(inputs) != 1 or shape(inputs[0]) != tuple(input_shape):
      raise CheckpointError(f"{path}: expected one input of shape {tuple(input_shape)}, got "
                            f"{[shape(d) for d in inputs]}")
    if len(outputs) != num_outputs:
      raise CheckpointError(f"{path}: expected {num_outputs} outputs, got {len(outputs)}")
    self._input_index = inputs[0]["index"]
    self._output_indices = [d["index"] for d in outputs]
    self.output_shapes = [shape(d) for d in outputs]

  def __call__(self, x: np.ndarray) -> list[np.ndarray]:
    self._interp.set_tensor(self._input_index, x)
    self._interp.invoke()
    # get_tensor copies, so results stay valid after the next invoke.
    return [self._interp.get_tensor(i) for i in self._output_indices]
