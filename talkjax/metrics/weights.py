"""Where the metrics' network weights live, and the error that names the missing file.

Every learned metric reads Flax variables written by ``third_party.convert`` (an Orbax directory)
from ``<weights_dir>/<kind>``. Nothing is ever downloaded: when a directory is missing, the error
names the original file to obtain and the exact command that converts it.
"""

from __future__ import annotations

import dataclasses
import os

from talkjax.errors import CheckpointError

DEFAULT_WEIGHTS_DIR = "weights"


class MissingWeightsError(CheckpointError):
  """A metric's weights were not found; the message says which file to get and how to convert it."""


@dataclasses.dataclass(frozen=True)
class WeightsSpec:
  """What one metric network needs.

  Attributes:
    kind: converter kind (``third_party.convert --kind``), also the directory name under
      ``weights_dir``.
    source_file: the published PyTorch file users convert.
    where: where that file comes from (for the error message).
  """
  kind: str
  source_file: str
  where: str

  def path(self, weights_dir: str | os.PathLike[str]) -> str:
    return os.path.join(os.fspath(weights_dir), self.kind)

  def convert_command(self, weights_dir: str | os.PathLike[str]) -> str:
    return (f"python -m third_party.convert --kind={self.kind} --input={self.source_file} "
            f"--output={self.path(weights_dir)}")

  def missing_error(self, weights_dir: str | os.PathLike[str], what: str) -> MissingWeightsError:
    return MissingWeightsError(
        f"{what} needs the converted {self.kind} weights at {self.path(weights_dir)} (not found). "
        f"Get {self.source_file} ({self.where}) and convert it: {self.convert_command(weights_dir)}")


SYNCNET_V2 = WeightsSpec("syncnet_v2", "syncnet_v2.model",
                         "joonson/syncnet_python, download_model.sh")
INCEPTION_FID = WeightsSpec("inception_fid", "pt_inception-2015-12-05-6726825d.pth",
                            "the pytorch-fid release 'fid_weights'")
LPIPS_ALEX = WeightsSpec("lpips_alex", "alexnet-owt-7be5be79.pth",
                         "torchvision's AlexNet ImageNet weights; the LPIPS heads come from the lpips "
                         "package's weights/v0.1/alex.pth")
LPIPS_VGG = WeightsSpec("lpips_vgg", "vgg16-397923af.pth",
                        "torchvision's VGG16 ImageNet weights; the LPIPS heads come from the lpips "
                        "package's weights/v0.1/vgg.pth")


def load(spec: WeightsSpec, weights_dir: str | os.PathLike[str], what: str) -> dict:
  """Loads ``<weights_dir>/<kind>`` and checks it fits the module; MissingWeightsError if absent."""
  path = spec.path(weights_dir)
  if not os.path.isdir(path):
    raise spec.missing_error(weights_dir, what)
  from talkjax import checkpoints  # pylint: disable=g-import-not-at-top
  from third_party import convert  # pylint: disable=g-import-not-at-top
  variables = checkpoints.load_variables(path)
  convert.check_variables_fit(spec.kind, variables)
  return variables
