"""FID: Fréchet distance between Inception pool3 statistics of generated and reference frames.

Exactly pytorch-fid's definition (the one Wav2Lip's evaluation and its successors cite):

- features: ``talkjax.models.inception.InceptionV3FID`` (pytorch-fid's FID Inception, converted from
  ``pt_inception-2015-12-05-6726825d.pth``) on each frame as RGB ``uint8 / 255`` (torchvision's
  ``ToTensor``), resized inside the network to 299x299 with PyTorch's bilinear interpolation;
- statistics: the mean and the *sample* covariance (``np.cov(rowvar=False)``, ddof 1) of all frames
  of a set (here: every aligned frame of every generated video vs. of every reference video),
  accumulated in float64;
- distance ``||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr(sqrtm(S1 S2))`` with ``scipy.linalg.sqrtm``;
  if the square root is not finite, ``eps = 1e-6`` is added to both diagonals and it is recomputed;
  an imaginary part is dropped if its diagonal is within 1e-3 of zero (else an error).

With fewer frames than feature dimensions (2048) the covariances are singular and FID is biased
upwards; published numbers use thousands of frames. :func:`frechet_distance` warns below 2048.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from talkjax.errors import ArgumentError, ShapeError
from talkjax.metrics import weights as weights_lib

logger = logging.getLogger(__name__)

FEATURES = 2048
DEFAULT_BATCH = 16


def _trace_sqrt_product_eigh(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
  """Tr(sqrtm(S1 S2)) = sum of sqrt(eig(S1^1/2 S2 S1^1/2)) (both PSD): two symmetric eigensolves."""
  w, v = np.linalg.eigh(sigma1)
  root = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
  m = root @ sigma2 @ root
  return float(np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(0.5 * (m + m.T)), 0.0, None))))


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6, method: str = "sqrtm") -> float:
  """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

  Args:
    mu1, sigma1, mu2, sigma2: means ``(D,)`` and covariances ``(D, D)``.
    eps: diagonal offset pytorch-fid adds when ``sqrtm`` of the product is not finite.
    method: ``"sqrtm"``: pytorch-fid's algorithm, ``scipy.linalg.sqrtm(S1 @ S2)`` (the reference;
      slow at D = 2048: minutes on a small CPU); ``"eigh"``: the same trace from two symmetric
      eigendecompositions (5-10x faster; agrees with ``sqrtm`` to numerical precision when the
      covariances are well conditioned, i.e. with more frames than dimensions).
  """
  if method not in ("sqrtm", "eigh"):
    raise ArgumentError(f"frechet_distance: method must be 'sqrtm' or 'eigh', got {method!r}")
  mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
  sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
  sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
  if mu1.shape != mu2.shape:
    raise ShapeError(f"frechet_distance: mean vectors differ in length ({mu1.shape} vs {mu2.shape})")
  if sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
    raise ShapeError(f"frechet_distance: covariances {sigma1.shape} / {sigma2.shape} do not match the "
                     f"means ({mu1.size})")
  for name, a in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
    if not np.all(np.isfinite(a)):
      raise ArgumentError(f"frechet_distance: {name} contains NaN or inf")
  diff = mu1 - mu2
  if method == "eigh":
    tr_covmean = _trace_sqrt_product_eigh(sigma1, sigma2)
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)
  covmean = scipy.linalg.sqrtm(sigma1.dot(sigma2))
  if not np.all(np.isfinite(covmean)):
    logger.warning("FID: singular covariance product; adding %g to the diagonals", eps)
    offset = np.eye(sigma1.shape[0]) * eps
    covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
  if np.iscomplexobj(covmean):
    if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
      raise ArgumentError(f"frechet_distance: sqrtm has a large imaginary component "
                          f"({np.max(np.abs(covmean.imag)):.3g}); the covariances are not valid")
    covmean = covmean.real
  return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


class ActivationStats:
  """Streaming mean and sample covariance of feature vectors, in float64.

  Sums are taken about a fixed shift (the first batch's mean) so the covariance does not lose
  precision to cancellation; the result equals ``np.mean`` / ``np.cov(rowvar=False)`` of all rows.
  """

  def __init__(self, dim: int = FEATURES):
    self.dim = int(dim)
    self.count = 0
    self._shift: np.ndarray | None = None
    self._sum = np.zeros((self.dim,), np.float64)
    self._outer = np.zeros((self.dim, self.dim), np.float64)

  def add(self, features) -> None:
    x = np.asarray(features, np.float64)
    if x.ndim != 2 or x.shape[1] != self.dim:
      raise ShapeError(f"ActivationStats: expected (N, {self.dim}) features, got {x.shape}")
    if not np.all(np.isfinite(x)):
      raise ArgumentError("ActivationStats: features contain NaN or inf")
    if x.shape[0] == 0:
      return
    if self._shift is None:
      self._shift = x.mean(axis=0)
    d = x - self._shift
    self._sum += d.sum(axis=0)
    self._outer += d.T @ d
    self.count += x.shape[0]

  def merge(self, other: ActivationStats) -> None:
    """Adds another accumulator's rows (e.g. one per video) to this one."""
    if other.count == 0:
      return
    if self._shift is None:
      self._shift = other._shift.copy()
    delta = other._shift - self._shift
    # Re-centre the other's sums from its shift to ours: sum(x - s) = sum(x - s') + n (s' - s).
    s_other = other._sum + other.count * delta
    self._outer += other._outer + np.outer(other._sum, delta) + np.outer(delta, other._sum) \
        + other.count * np.outer(delta, delta)
    self._sum += s_other
    self.count += other.count

  @property
  def mean(self) -> np.ndarray:
    if self.count == 0:
      raise ArgumentError("ActivationStats: no features were added")
    return self._shift + self._sum / self.count

  @property
  def cov(self) -> np.ndarray:
    if self.count < 2:
      raise ArgumentError(f"ActivationStats: a covariance needs at least 2 feature vectors, got {self.count}")
    m = self._sum / self.count
    return (self._outer - self.count * np.outer(m, m)) / (self.count - 1)


def fid_from_stats(a: ActivationStats, b: ActivationStats, method: str = "sqrtm") -> float:
  """FID between two accumulated sets; warns when either has fewer than 2048 frames."""
  for name, s in (("generated", a), ("reference", b)):
    if s.count < FEATURES:
      logger.warning("FID: only %d %s frames (< %d feature dimensions): the covariance is singular "
                     "and FID is biased upwards; compare only numbers computed on equal frame counts",
                     s.count, name, FEATURES)
  return frechet_distance(a.mean, a.cov, b.mean, b.cov, method=method)


@functools.partial(jax.jit, static_argnums=0)
def _features(module, variables, frames_uint8):
  return module.apply(variables, frames_uint8.astype(jnp.float32) / 255.0)


class InceptionFeatures:
  """pool3 features of RGB uint8 frames with the converted FID Inception (fixed-size jitted batches).

  Args:
    variables: Flax variables of ``InceptionV3FID`` (``third_party.convert --kind=inception_fid``).
    batch_size: frames per device call (the last batch is padded).
    module: the module (default ``InceptionV3FID()``: resize to 299, normalise).
  """

  def __init__(self, variables: Any, batch_size: int = DEFAULT_BATCH, module: Any = None):
    if module is None:
      from talkjax.models.inception import InceptionV3FID  # pylint: disable=g-import-not-at-top
      module = InceptionV3FID()
    if batch_size < 1:
      raise ArgumentError(f"batch_size: must be >= 1, got {batch_size}")
    self.module = module
    self.variables = jax.tree.map(jnp.asarray, variables)
    self.batch_size = int(batch_size)

  @classmethod
  def from_weights_dir(cls, weights_dir: str | os.PathLike[str], **kwargs) -> InceptionFeatures:
    return cls(weights_lib.load(weights_lib.INCEPTION_FID, weights_dir, "FID"), **kwargs)

  def __call__(self, frames) -> np.ndarray:
    """``(N, H, W, 3)`` RGB uint8 -> ``(N, 2048)`` float32 pool3 features."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
      raise ShapeError(f"FID: expected (N, H, W, 3) RGB uint8 frames, got {frames.shape} {frames.dtype}")
    n = frames.shape[0]
    out = []
    for i in range(0, n, self.batch_size):
      chunk = frames[i:i + self.batch_size]
      if chunk.shape[0] < self.batch_size:
        chunk = np.concatenate([chunk, np.zeros((self.batch_size - chunk.shape[0],) + chunk.shape[1:],
                                                np.uint8)])
      out.append(np.asarray(_features(self.module, self.variables, jnp.asarray(chunk))))
    if not out:
      return np.zeros((0, FEATURES), np.float32)
    return np.concatenate(out)[:n]


def fid(features: InceptionFeatures, generated_frames, reference_frames, method: str = "sqrtm") -> float:
  """FID between two in-memory sets of RGB uint8 frames (``(N, H, W, 3)`` each)."""
  a, b = ActivationStats(), ActivationStats()
  a.add(features(generated_frames))
  b.add(features(reference_frames))
  return fid_from_stats(a, b, method)
