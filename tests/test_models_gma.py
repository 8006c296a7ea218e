"""RAFT-GMA: parity with a PyTorch GMA built here on the public layout, converter strictness, helpers.

The PyTorch reference below follows zacjiang/GMA (+ princeton-vl/RAFT) module by module, with the same
state-dict keys, RAFT's CorrBlock (grid_sample, align_corners=True, meshgrid(dy, dx) offsets) and its
InputPadder. Weights are random, with BatchNorm statistics randomised and the mask / attention /
flow-head weights scaled up so that the convex-upsampling softmax, the attention and the bilinear
lookups (fractional, partly outside the map) are all far from their trivial regimes.
"""

from __future__ import annotations

import copy
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn as tnn

from talkjax.errors import CheckpointError, ConfigError, ShapeError
from talkjax.models import gma
from talkjax.models import gma_parts
from third_party import convert as convert_lib
from third_party.converters import gma as gma_converter

ITERS = 3
H, W = 125, 131  # padded to 128 x 136 ("sintel": 1/2 rows, 2/3 columns): every pyramid level >= 2x2


# --- PyTorch reference (public GMA layout) -----------------------------------------------------

class TResidualBlock(tnn.Module):
  def __init__(self, cin, planes, norm, stride):
    super().__init__()
    make = (lambda: tnn.BatchNorm2d(planes)) if norm == "batch" else (lambda: tnn.InstanceNorm2d(planes))
    self.conv1 = tnn.Conv2d(cin, planes, 3, padding=1, stride=stride)
    self.conv2 = tnn.Conv2d(planes, planes, 3, padding=1)
    self.norm1, self.norm2 = make(), make()
    self.downsample = None
    if stride != 1:
      self.norm3 = make()
      self.downsample = tnn.Sequential(tnn.Conv2d(cin, planes, 1, stride=stride), self.norm3)

  def forward(self, x):
    y = F.relu(self.norm1(self.conv1(x)))
    y = F.relu(self.norm2(self.conv2(y)))
    if self.downsample is not None:
      x = self.downsample(x)
    return F.relu(x + y)


class TEncoder(tnn.Module):
  def __init__(self, out_dim, norm):
    super().__init__()
    self.conv1 = tnn.Conv2d(3, 64, 7, stride=2, padding=3)
    self.norm1 = tnn.BatchNorm2d(64) if norm == "batch" else tnn.InstanceNorm2d(64)
    cin, layers = 64, []
    for planes, stride in ((64, 1), (96, 2), (128, 2)):
      layers.append(tnn.Sequential(TResidualBlock(cin, planes, norm, stride),
                                   TResidualBlock(planes, planes, norm, 1)))
      cin = planes
    self.layer1, self.layer2, self.layer3 = layers
    self.conv2 = tnn.Conv2d(128, out_dim, 1)

  def forward(self, x):
    x = F.relu(self.norm1(self.conv1(x)))
    return self.conv2(self.layer3(self.layer2(self.layer1(x))))


class TRelPosEmb(tnn.Module):
  def __init__(self, max_pos, dh):
    super().__init__()
    self.rel_height = tnn.Embedding(2 * max_pos - 1, dh)
    self.rel_width = tnn.Embedding(2 * max_pos - 1, dh)
    ar = torch.arange(max_pos)
    self.register_buffer("rel_ind", ar.view(1, -1) - ar.view(-1, 1) + max_pos - 1)

  def forward(self, q):  # (b, heads, x, y, d)
    _, _, h, w, _ = q.shape
    eh = self.rel_height(self.rel_ind[:h, :h].reshape(-1)).view(h, h, 1, -1)
    ew = self.rel_width(self.rel_ind[:w, :w].reshape(-1)).view(w, 1, w, -1)
    return torch.einsum("bnxyd,xuvd->bnxyuv", q, eh) + torch.einsum("bnxyd,yuvd->bnxyuv", q, ew)


class TAttention(tnn.Module):
  def __init__(self, variant="content", heads=1, dh=128, max_pos=160):
    super().__init__()
    self.variant, self.heads, self.dh = variant, heads, dh
    self.to_qk = tnn.Conv2d(128, 2 * heads * dh, 1, bias=False)
    self.pos_emb = TRelPosEmb(max_pos, dh)  # registered whatever the variant, as in GMA

  def forward(self, fmap):
    b, _, h, w = fmap.shape
    q, k = self.to_qk(fmap).chunk(2, dim=1)
    q, k = (t.view(b, self.heads, self.dh, h, w).permute(0, 1, 3, 4, 2) for t in (q, k))
    q = q * self.dh ** -0.5
    if self.variant == "position_only":
      sim = self.pos_emb(q)
    elif self.variant == "position_and_content":
      sim = torch.einsum("bnxyd,bnuvd->bnxyuv", q, k) + self.pos_emb(q)
    else:
      sim = torch.einsum("bnxyd,bnuvd->bnxyuv", q, k)
    return sim.reshape(b, self.heads, h * w, h * w).softmax(dim=-1)


class TAggregate(tnn.Module):
  def __init__(self, heads=1, dh=128):
    super().__init__()
    self.heads, self.dh = heads, dh
    self.to_v = tnn.Conv2d(128, heads * dh, 1, bias=False)
    self.gamma = tnn.Parameter(torch.zeros(1))
    self.project = tnn.Conv2d(heads * dh, 128, 1, bias=False) if heads * dh != 128 else None

  def forward(self, attn, fmap):
    b, _, h, w = fmap.shape
    v = self.to_v(fmap).view(b, self.heads, self.dh, h * w).transpose(2, 3)
    out = torch.einsum("bnij,bnjd->bnid", attn, v).transpose(2, 3).reshape(b, self.heads * self.dh, h, w)
    if self.project is not None:
      out = self.project(out)
    return fmap + self.gamma * out


class TMotionEncoder(tnn.Module):
  def __init__(self):
    super().__init__()
    self.convc1 = tnn.Conv2d(324, 256, 1)
    self.convc2 = tnn.Conv2d(256, 192, 3, padding=1)
    self.convf1 = tnn.Conv2d(2, 128, 7, padding=3)
    self.convf2 = tnn.Conv2d(128, 64, 3, padding=1)
    self.conv = tnn.Conv2d(256, 126, 3, padding=1)

  def forward(self, flow, corr):
    cor = F.relu(self.convc2(F.relu(self.convc1(corr))))
    flo = F.relu(self.convf2(F.relu(self.convf1(flow))))
    return torch.cat([F.relu(self.conv(torch.cat([cor, flo], 1))), flow], 1)


class TSepConvGRU(tnn.Module):
  def __init__(self):
    super().__init__()
    for i, (k, p) in (("1", ((1, 5), (0, 2))), ("2", ((5, 1), (2, 0)))):
      for g in "zrq":
        setattr(self, f"conv{g}{i}", tnn.Conv2d(512, 128, k, padding=p))

  def forward(self, h, x):
    for i in "12":
      hx = torch.cat([h, x], 1)
      z = torch.sigmoid(getattr(self, f"convz{i}")(hx))
      r = torch.sigmoid(getattr(self, f"convr{i}")(hx))
      q = torch.tanh(getattr(self, f"convq{i}")(torch.cat([r * h, x], 1)))
      h = (1 - z) * h + z * q
    return h


class TFlowHead(tnn.Module):
  def __init__(self):
    super().__init__()
    self.conv1 = tnn.Conv2d(128, 256, 3, padding=1)
    self.conv2 = tnn.Conv2d(256, 2, 3, padding=1)

  def forward(self, x):
    return self.conv2(F.relu(self.conv1(x)))


class TUpdateBlock(tnn.Module):
  def __init__(self, heads=1):
    super().__init__()
    self.encoder = TMotionEncoder()
    self.gru = TSepConvGRU()
    self.flow_head = TFlowHead()
    self.mask = tnn.Sequential(tnn.Conv2d(128, 256, 3, padding=1), tnn.ReLU(), tnn.Conv2d(256, 576, 1))
    self.aggregator = TAggregate(heads)

  def forward(self, net, inp, corr, flow, attention):
    motion = self.encoder(flow, corr)
    net = self.gru(net, torch.cat([inp, motion, self.aggregator(attention, motion)], 1))
    return net, 0.25 * self.mask(net), self.flow_head(net)


def t_bilinear(img, coords):
  h, w = img.shape[-2:]
  x, y = coords.split([1, 1], dim=-1)
  grid = torch.cat([2 * x / (w - 1) - 1, 2 * y / (h - 1) - 1], dim=-1)
  return F.grid_sample(img, grid, align_corners=True)


class TGMA(tnn.Module):
  def __init__(self, variant="content", heads=1):
    super().__init__()
    self.fnet = TEncoder(256, "instance")
    self.cnet = TEncoder(256, "batch")
    self.update_block = TUpdateBlock(heads)
    self.att = TAttention(variant, heads)

  def forward(self, image1, image2, iters, flow_init=None):
    image1, image2 = 2 * (image1 / 255.0) - 1.0, 2 * (image2 / 255.0) - 1.0
    b = image1.shape[0]
    fmap1, fmap2 = self.fnet(torch.cat([image1, image2], 0)).split([b, b], 0)
    _, c, h, w = fmap1.shape
    corr = torch.matmul(fmap1.view(b, c, h * w).transpose(1, 2), fmap2.view(b, c, h * w))
    corr = (corr / torch.sqrt(torch.tensor(c, dtype=corr.dtype))).reshape(b * h * w, 1, h, w)
    pyramid = [corr]
    for _ in range(3):
      pyramid.append(F.avg_pool2d(pyramid[-1], 2, stride=2))
    net, inp = torch.split(self.cnet(image1), [128, 128], dim=1)
    net, inp = torch.tanh(net), torch.relu(inp)
    attention = self.att(inp)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    coords0 = torch.stack([xs, ys], 0).to(image1.dtype)[None].expand(b, -1, -1, -1)
    coords1 = coords0 if flow_init is None else coords0 + flow_init
    d = torch.linspace(-4, 4, 9)
    delta = torch.stack(torch.meshgrid(d, d, indexing="ij"), dim=-1).view(1, 9, 9, 2).to(image1.dtype)
    preds = []
    for _ in range(iters):
      coords1 = coords1.detach()
      centre = coords1.permute(0, 2, 3, 1).reshape(b * h * w, 1, 1, 2)
      corr_feats = torch.cat([t_bilinear(lvl, centre / 2 ** i + delta).view(b, h, w, -1)
                              for i, lvl in enumerate(pyramid)], dim=-1).permute(0, 3, 1, 2)
      net, mask, delta_flow = self.update_block(net, inp, corr_feats, coords1 - coords0, attention)
      coords1 = coords1 + delta_flow
      flow = coords1 - coords0
      m = torch.softmax(mask.view(b, 1, 9, 8, 8, h, w), dim=2)
      up = F.unfold(8 * flow, [3, 3], padding=1).view(b, 2, 9, 1, 1, h, w)
      preds.append(torch.sum(m * up, dim=2).permute(0, 1, 4, 2, 5, 3).reshape(b, 2, 8 * h, 8 * w))
    return preds


def t_padder(shape, mode="sintel"):
  ht, wd = shape[-2:]
  pad_ht = (((ht // 8) + 1) * 8 - ht) % 8
  pad_wd = (((wd // 8) + 1) * 8 - wd) % 8
  if mode == "sintel":
    return [pad_wd // 2, pad_wd - pad_wd // 2, pad_ht // 2, pad_ht - pad_ht // 2]
  return [pad_wd // 2, pad_wd - pad_wd // 2, 0, pad_ht]


def randomise(model: tnn.Module, seed: int = 0) -> tnn.Module:
  """Random weights far from the trivial regimes; BatchNorm in eval mode with random statistics."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for mod in model.modules():
      if isinstance(mod, tnn.BatchNorm2d):
        mod.weight.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
        mod.bias.copy_(torch.randn(mod.num_features, generator=g) * 0.2)
        mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.3)
        mod.running_var.copy_(torch.rand(mod.num_features, generator=g) * 1.5 + 0.5)
    ub = getattr(model, "update_block", None)
    if ub is not None:
      ub.aggregator.gamma.fill_(0.7)
      ub.mask[2].weight.mul_(30.0)           # sharp convex-upsampling weights
      ub.flow_head.conv2.weight.mul_(40.0)   # updates of a few pixels at 1/8 resolution
    att = getattr(model, "att", model if isinstance(model, TAttention) else None)
    if att is not None:
      att.to_qk.weight.mul_(4.0)             # non-uniform attention
  return model.eval()


def to_nchw(x):
  return torch.from_numpy(np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))))


def rel_err(a, b) -> float:
  return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))


@functools.lru_cache(maxsize=None)
def _reference():
  torch.manual_seed(0)
  model = randomise(TGMA())
  rng = np.random.default_rng(0)
  base = rng.uniform(0, 255, (2, H + 8, W + 8, 3)).astype(np.float32)
  img1 = base[:, 4:4 + H, 4:4 + W]
  img2 = base[:, 6:6 + H, 3:3 + W]  # shifted copy: a real displacement to find
  hp, wp = H + sum(t_padder((H, W))[2:]), W + sum(t_padder((H, W))[:2])
  flow_init = rng.uniform(-3, 3, (2, hp // 8, wp // 8, 2)).astype(np.float32)
  sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
  return model, sd, img1, img2, flow_init


@functools.lru_cache(maxsize=None)
def _variables():
  _, sd, *_ = _reference()
  # DataParallel checkpoints carry "module."; convert_state_dict strips it.
  return convert_lib.convert_state_dict("gma", {"module." + k: v for k, v in sd.items()}, "gma-test.pth")


# --- parity ------------------------------------------------------------------------------------

def _torch_flows(model, img1, img2, flow_init, dtype, probe=None):
  """Reference flows (iters, B, H, W, 2) through RAFT's padder; with ``probe`` also the gradients of
  sum(probe * flows) w.r.t. both (unpadded) images."""
  pad = t_padder((H, W))
  model = model if dtype == torch.float32 else copy.deepcopy(model).to(dtype)
  u1, u2 = (to_nchw(x).to(dtype).requires_grad_(probe is not None) for x in (img1, img2))
  p1, p2 = (F.pad(u, pad, mode="replicate") for u in (u1, u2))
  preds = model(p1, p2, ITERS, flow_init=None if flow_init is None else to_nchw(flow_init).to(dtype))
  preds = torch.stack([p[..., pad[2]:p.shape[-2] - pad[3], pad[0]:p.shape[-1] - pad[1]] for p in preds])
  flows = preds.permute(0, 1, 3, 4, 2)
  grads = None
  if probe is not None:
    grads = [g.permute(0, 2, 3, 1).numpy() for g in torch.autograd.grad(
        (flows * torch.from_numpy(probe).to(dtype)).sum(), (u1, u2))]
  return flows.detach().numpy(), grads


def test_forward_matches_pytorch_gma_float32():
  model, _, img1, img2, flow_init = _reference()
  variables = _variables()
  with torch.no_grad():
    ref, _ = _torch_flows(model, img1, img2, flow_init, torch.float32)
  net = gma.GMA(iters=ITERS)
  run = jax.jit(lambda a, b: net.apply(variables, a, b, flow_init=flow_init, return_all=True))
  flow, flows = run(img1, img2)
  chex.assert_shape(flow, (2, H, W, 2))
  chex.assert_shape(flows, (ITERS, 2, H, W, 2))
  np.testing.assert_array_equal(np.asarray(flow), np.asarray(flows[-1]))
  err = rel_err(flow, ref[-1])
  print(f"GMA float32 final-flow relative error vs PyTorch: {err:.2e} "
        f"(max |flow| {np.abs(ref[-1]).max():.1f} px)")
  assert err < 1e-5
  assert rel_err(flows, ref) < 1e-5
  assert np.abs(ref[-1]).max() > 5.0  # non-trivial flows: lookups at fractional cells, partly outside

  # The checked inference entry point (one convex upsampling after the scan, no per-iteration
  # outputs, no warm start).
  with torch.no_grad():
    ref_cold, _ = _torch_flows(model, img1, img2, None, torch.float32)
  flow_only = gma.estimate_flow(variables, img1, img2, iters=ITERS)
  assert isinstance(flow_only, np.ndarray) and flow_only.shape == (2, H, W, 2)
  assert rel_err(flow_only, ref_cold[-1]) < 1e-5
  assert rel_err(ref_cold[-1], ref[-1]) > 1e-2  # the warm start did change the result


@pytest.mark.slow
def test_forward_and_image_gradients_match_pytorch_gma_float64():
  # Gradients through 3 iterations are ill-conditioned in float32 (PyTorch float32 itself is ~1e-3 off
  # its float64 result in the correlation path), so the backward pass is checked exactly in float64:
  # same detach points, same sampling, same padding fold-back.
  model, _, img1, img2, flow_init = _reference()
  img1, img2, flow_init = img1[:1], img2[:1], flow_init[:1]
  probe = np.random.default_rng(1).standard_normal((ITERS, 1, H, W, 2))
  ref, (g1_ref, g2_ref) = _torch_flows(model, img1, img2, flow_init, torch.float64, probe)
  with jax.enable_x64(True):
    variables = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), _variables())
    net = gma.GMA(iters=ITERS, dtype=jnp.float64)

    def loss(a, b):
      flows = net.apply(variables, a, b, flow_init=flow_init, return_all=True)[1]
      return jnp.sum(flows * probe), flows

    (_, flows), (g1, g2) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(
        img1.astype(np.float64), img2.astype(np.float64))
    assert flows.dtype == jnp.float64 and g1.dtype == jnp.float64
    flows, g1, g2 = np.asarray(flows), np.asarray(g1), np.asarray(g2)
  assert rel_err(flows, ref) < 1e-10
  for got, want in ((g1, g1_ref), (g2, g2_ref)):
    err = rel_err(got, want)
    print(f"GMA float64 image-gradient relative error vs PyTorch: {err:.2e}")
    assert np.abs(want).max() > 0
    assert err < 1e-9


@pytest.mark.parametrize("variant", ["position_only", "position_and_content"])
def test_positional_attention_variants_match_pytorch(variant):
  torch.manual_seed(3)
  att = randomise(TAttention(variant, heads=2, max_pos=12))
  x = np.random.default_rng(2).uniform(0, 1, (2, 5, 7, 128)).astype(np.float32)
  ref = att(to_nchw(x)).detach().numpy()
  sd = {k: v.numpy() for k, v in att.state_dict().items()}
  params = {"to_qk": {"kernel": np.transpose(sd["to_qk.weight"], (2, 3, 1, 0))},
            "pos_emb": {"rel_height": {"embedding": sd["pos_emb.rel_height.weight"]},
                        "rel_width": {"embedding": sd["pos_emb.rel_width.weight"]}}}
  got = gma_parts.GlobalAttention(heads=2, variant=variant, max_pos_size=12).apply({"params": params}, x)
  chex.assert_shape(got, (2, 2, 35, 35))
  np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5, atol=1e-6)


def test_multi_head_aggregate_with_projection_matches_pytorch():
  torch.manual_seed(4)
  agg = TAggregate(heads=2).eval()
  with torch.no_grad():
    agg.gamma.fill_(0.3)
  rng = np.random.default_rng(4)
  attn = jax.nn.softmax(rng.standard_normal((1, 2, 12, 12)).astype(np.float32) * 3, axis=-1)
  fmap = rng.standard_normal((1, 3, 4, 128)).astype(np.float32)
  ref = agg(torch.from_numpy(np.array(attn)), to_nchw(fmap)).detach().permute(0, 2, 3, 1).numpy()
  sd = {k: v.detach().numpy() for k, v in agg.state_dict().items()}
  params = {"to_v": {"kernel": np.transpose(sd["to_v.weight"], (2, 3, 1, 0))},
            "project": {"kernel": np.transpose(sd["project.weight"], (2, 3, 1, 0))}, "gamma": sd["gamma"]}
  got = gma_parts.Aggregate(dim=128, heads=2).apply({"params": params}, attn, fmap)
  np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5, atol=1e-5)


# --- correlation lookup -----------------------------------------------------------------------

def _numpy_lookup(level: np.ndarray, x: float, y: float, r: int) -> np.ndarray:
  """Direct bilinear sampling with zero outside, in RAFT's channel order (x offset major)."""
  hl, wl = level.shape
  val = lambda yy, xx: level[yy, xx] if 0 <= yy < hl and 0 <= xx < wl else 0.0  # noqa: E731
  out = []
  for i in range(-r, r + 1):
    for j in range(-r, r + 1):
      sx, sy = x + i, y + j
      x0, y0 = int(np.floor(sx)), int(np.floor(sy))
      fx, fy = sx - x0, sy - y0
      out.append((1 - fy) * ((1 - fx) * val(y0, x0) + fx * val(y0, x0 + 1))
                 + fy * ((1 - fx) * val(y0 + 1, x0) + fx * val(y0 + 1, x0 + 1)))
  return np.array(out)


def test_lookup_matches_direct_bilinear_sampling_including_borders_and_1px_levels():
  rng = np.random.default_rng(5)
  f1 = rng.standard_normal((1, 8, 12, 16)).astype(np.float32)
  f2 = rng.standard_normal((1, 8, 12, 16)).astype(np.float32)
  pyramid = gma_parts.correlation_pyramid(jnp.asarray(f1), jnp.asarray(f2), num_levels=4)
  # avg_pool2d floors odd sizes: 8x12 -> 4x6 -> 2x3 -> 1x1.
  assert [tuple(p.shape) for p in pyramid] == [(96, 8, 12), (96, 4, 6), (96, 2, 3), (96, 1, 1)]
  dense = np.einsum("bijc,bklc->bijkl", f1, f2).reshape(96, 8, 12) / 4.0
  np.testing.assert_allclose(np.asarray(pyramid[0]), dense, rtol=1e-5, atol=1e-5)
  pooled = dense[:, :, :12].reshape(96, 4, 2, 6, 2).mean(axis=(2, 4))
  np.testing.assert_allclose(np.asarray(pyramid[1]), pooled, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(pyramid[3])[:, 0, 0], dense[:, :8, :8].mean(axis=(1, 2)),
                             rtol=1e-5, atol=1e-5)

  coords = rng.uniform(-4, 15, (1, 8, 12, 2)).astype(np.float32)
  coords[0, 0, 0] = (-7.5, 1.25)   # window partly outside on the left
  coords[0, 1, 1] = (60.0, -40.0)  # window entirely outside at every level: zeros
  coords[0, 2, 2] = (3.0, 1.0)     # integer centre: plain reads
  coords[0, 3, 3] = (1e9, 2.0)     # far out: defined (zeros), no integer overflow
  lookup = jax.jit(functools.partial(gma_parts.lookup_correlation, radius=2))
  got = np.asarray(lookup(pyramid, jnp.asarray(coords))).reshape(96, 100)
  assert np.all(got[1 * 12 + 1] == 0.0) and np.all(got[3 * 12 + 3] == 0.0)
  levels = [np.asarray(p) for p in pyramid]
  for q in list(range(0, 96, 7)) + [0, 13, 26]:
    x, y = coords.reshape(96, 2)[q]
    for lvl in range(4):
      want = _numpy_lookup(levels[lvl][q], x / 2 ** lvl, y / 2 ** lvl, 2)
      np.testing.assert_allclose(got[q, 25 * lvl:25 * (lvl + 1)], want, rtol=1e-5, atol=1e-5)


def test_small_inputs_are_finite_where_pytorch_gma_returns_nan():
  # 96x96 (a Wav2Lip face crop): the coarsest correlation level is 1x1. RAFT's coordinate
  # normalisation divides by W-1 = 0 there; sampling in pixel coordinates stays defined.
  torch.manual_seed(6)
  model = randomise(TGMA(), seed=6)
  rng = np.random.default_rng(6)
  img1 = rng.uniform(0, 255, (1, 96, 96, 3)).astype(np.float32)
  img2 = np.roll(img1, 2, axis=2)
  with torch.no_grad():
    assert torch.isnan(model(to_nchw(img1), to_nchw(img2), 1)[-1]).all()
  variables = gma_converter.convert(model.state_dict(), "small")
  flow = jax.jit(lambda a, b: gma.GMA(iters=2).apply(variables, a, b))(img1, img2)
  chex.assert_shape(flow, (1, 96, 96, 2))
  assert np.all(np.isfinite(np.asarray(flow)))


# --- structure: scan, padding -----------------------------------------------------------------

def test_iterations_are_one_scan_so_the_graph_does_not_grow_with_iters():
  variables = _variables()
  img = jnp.zeros((1, 64, 64, 3), jnp.float32)
  sizes = []
  for iters in (2, 12):
    jaxpr = jax.make_jaxpr(lambda a, b, n=iters: gma.GMA(iters=n).apply(variables, a, b))(img, img)
    text = str(jaxpr)
    assert "scan" in text or "while" in text
    sizes.append(len(jaxpr.jaxpr.eqns))
  assert sizes[0] == sizes[1]


@pytest.mark.parametrize("mode", ["sintel", "kitti"])
def test_pad_to_multiple_matches_raft_input_padder(mode):
  x = np.random.default_rng(7).uniform(0, 255, (2, 13, 22, 3)).astype(np.float32)
  padded, pads = gma.pad_to_multiple(jnp.asarray(x), mode)
  tp = t_padder(x.shape[1:3], mode)
  assert pads == ((tp[2], tp[3]), (tp[0], tp[1]))
  ref = F.pad(to_nchw(x), tp, mode="replicate").permute(0, 2, 3, 1).numpy()
  chex.assert_shape(padded, (2, 16, 24, 3))
  np.testing.assert_array_equal(np.asarray(padded), ref)
  np.testing.assert_array_equal(np.asarray(gma.unpad(padded, pads)), x)
  assert gma.pad_amounts(16, 24, mode) == ((0, 0), (0, 0))


# --- converter --------------------------------------------------------------------------------

def test_convert_file_round_trips_a_dataparallel_checkpoint_that_fits_the_module(tmp_path):
  from talkjax import checkpoints  # pylint: disable=g-import-not-at-top
  _, sd, *_ = _reference()
  path = tmp_path / "gma-things.pth"
  torch.save({"module." + k: v for k, v in sd.items()}, path)
  out = convert_lib.convert_file("gma", str(path), str(tmp_path / "gma"))  # runs check_variables_fit
  loaded = checkpoints.load_variables(out)
  variables = _variables()
  chex.assert_trees_all_close(loaded, variables)
  assert "gma" in convert_lib.available_kinds()
  assert "pos_emb" not in variables["params"]["att"]  # content-only: positional tables dropped
  assert float(variables["params"]["update_block"]["aggregator"]["gamma"][0]) == pytest.approx(0.7)
  n_params = sum(np.size(a) for a in jax.tree_util.tree_leaves(variables["params"]))
  assert n_params == 5_798_209  # 5.88 M in PyTorch = this + 2 x 319 x 128 unused positional weights


def test_converter_reports_missing_unknown_and_misshaped_keys():
  _, sd, *_ = _reference()
  bad = dict(sd)
  del bad["update_block.gru.convq2.bias"]
  bad["update_block.extra.weight"] = torch.zeros(3)
  bad["cnet.conv2.weight"] = torch.zeros(256, 128, 3, 3)
  with pytest.raises(CheckpointError) as exc:
    convert_lib.convert_state_dict("gma", bad, "broken.pth")
  msg = str(exc.value)
  assert "broken.pth" in msg
  assert "missing keys: update_block.gru.convq2.bias" in msg
  assert "unknown keys: update_block.extra.weight" in msg
  assert "cnet.conv2.weight: expected (256, 128, 1, 1), found (256, 128, 3, 3)" in msg


def test_converter_handles_the_shared_shortcut_batchnorm():
  _, sd, *_ = _reference()
  only_norm3 = {k: v for k, v in sd.items() if ".downsample.1." not in k}
  a = convert_lib.convert_state_dict("gma", sd)
  b = convert_lib.convert_state_dict("gma", only_norm3)
  chex.assert_trees_all_equal(a, b)
  clash = dict(sd)
  clash["cnet.layer2.0.norm3.running_var"] = sd["cnet.layer2.0.norm3.running_var"] + 1
  with pytest.raises(CheckpointError, match="cnet.layer2.0.norm3.* differs from cnet.layer2.0.downsample.1"):
    convert_lib.convert_state_dict("gma", clash)


def test_converter_positional_variant_needs_the_tables():
  _, sd, *_ = _reference()
  v = gma_converter.convert(sd, "pos.pth", attention="position_and_content")
  chex.assert_shape(v["params"]["att"]["pos_emb"]["rel_height"]["embedding"], (319, 128))
  no_tables = {k: v for k, v in sd.items() if "pos_emb" not in k}
  with pytest.raises(CheckpointError, match="missing keys: att.pos_emb.rel_height.weight"):
    gma_converter.convert(no_tables, "pos.pth", attention="position_only")
  with pytest.raises(CheckpointError, match="attention variant"):
    gma_converter.convert(sd, "x.pth", attention="both")


# --- bad input ---------------------------------------------------------------------------------

def test_bad_inputs_raise_clear_errors():
  variables = _variables()
  net = gma.GMA(iters=1)
  ok = np.zeros((1, 64, 64, 3), np.float32)
  with pytest.raises(ShapeError, match=r"image1: expected \(B, H, W, 3\)"):
    net.apply(variables, ok[0], ok)
  with pytest.raises(ShapeError, match="image2: shape"):
    net.apply(variables, ok, np.zeros((1, 64, 72, 3), np.float32))
  with pytest.raises(ShapeError, match="too small"):
    net.apply(variables, ok[:, :56], ok[:, :56])
  # 57 rows pad to 64: the coarsest correlation level is 1 cell high, which is enough.
  shape = jax.eval_shape(lambda a, b: net.apply(variables, a, b), ok[:, :57], ok[:, :57]).shape
  assert shape == (1, 57, 64, 2)
  with pytest.raises(ShapeError, match="flow_init"):
    net.apply(variables, ok, ok, flow_init=np.zeros((1, 64, 64, 2), np.float32))
  with pytest.raises(ConfigError, match="iters"):
    net.apply(variables, ok, ok, iters=0)
  with pytest.raises(ConfigError, match="attention"):
    gma.GMA(attention="global").apply(variables, ok, ok)
  with pytest.raises(ConfigError, match="pad_mode"):
    gma.GMA(pad_mode="reflect").apply(variables, ok, ok)
  nan = ok.copy()
  nan[0, 3, 3, 1] = np.nan
  with pytest.raises(ShapeError, match="image2: contains NaN"):
    gma.estimate_flow(variables, ok, nan)
  with pytest.raises(ShapeError, match=r"\[0, 255\]"):
    gma.estimate_flow(variables, ok - 1.0, ok)


def test_context_encoder_train_mode_matches_pytorch_batchnorm():
  model, *_ = _reference()
  cnet = copy.deepcopy(model.cnet).train()
  x = np.random.default_rng(8).uniform(-1, 1, (2, 32, 40, 3)).astype(np.float32)
  ref = cnet(to_nchw(x)).detach().permute(0, 2, 3, 1).numpy()
  v = _variables()
  encoder = gma_parts.BasicEncoder(256, "batch")
  got, updates = jax.jit(lambda variables, a: encoder.apply(variables, a, True, mutable=["batch_stats"]))(
      {"params": v["params"]["cnet"], "batch_stats": v["batch_stats"]["cnet"]}, x)
  chex.assert_shape(got, (2, 4, 5, 256))
  np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-4, atol=1e-4)
  # Running means follow PyTorch's momentum 0.1 (running variances differ by Bessel's n/(n-1)).
  np.testing.assert_allclose(np.asarray(updates["batch_stats"]["layer3_1"]["norm2"]["mean"]),
                             cnet.layer3[1].norm2.running_mean.numpy(), rtol=1e-4, atol=1e-5)


def test_remat_variant_checkpoints_the_iteration():
  variables = _variables()
  img = jnp.zeros((1, 64, 64, 3), jnp.float32)
  for remat in (False, True):
    net = gma.GMA(iters=2, remat=remat)
    jaxpr = str(jax.make_jaxpr(jax.grad(lambda a, n=net: jnp.sum(n.apply(variables, a, img))))(img))
    assert ("checkpoint" in jaxpr or "remat" in jaxpr) == remat
