"""Converter for RAFT-GMA checkpoints (zacjiang/GMA: gma-chairs/things/sintel/kitti.pth), kind ``gma``.

The PyTorch state dict (saved from ``nn.DataParallel``, hence the ``module.`` prefix that
``torch_io.unwrap_state_dict`` strips) maps onto :class:`talkjax.models.gma.GMA`:

* ``fnet.*`` / ``cnet.*``: BasicEncoders; ``layerN.M`` -> ``layerN_M``, the strided shortcut
  ``downsample.0`` -> ``downsample``. In ``cnet`` the shortcut BatchNorm is stored twice, as
  ``norm3.*`` and ``downsample.1.*`` (one module registered under two names); either may be present,
  and when both are they must be equal. BatchNorm ``weight/bias`` -> ``params`` ``scale/bias``,
  ``running_mean/var`` -> ``batch_stats`` ``mean/var``. ``fnet`` uses affine-free instance norm: no keys.
* ``att.to_qk``; ``att.pos_emb.rel_height/rel_width`` (+ the ``rel_ind`` index buffer). GMA's code
  registers the positional tables whatever the attention variant, so every published checkpoint has
  them; the content-only variant (the default, used by the published models) does not read them and
  they are dropped here.
* ``update_block.{encoder,gru,flow_head,aggregator}.*`` and ``update_block.mask.{0,2}`` ->
  ``update_block/mask_0``, ``mask_2``; ``aggregator.gamma`` keeps its shape (1,).

Conv weights OIHW -> HWIO. Anything unknown, missing or mis-shaped is reported in one error.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from talkjax.errors import CheckpointError
from third_party.convert import Converter
from third_party.converters.torch_io import StateDictReader, conv_kernel, unwrap_state_dict

_BN_PARAMS = ("weight", "bias", "running_mean", "running_var")


def _conv(r: StateDictReader, key: str, cout: int, cin: int, kh: int, kw: int, bias: bool = True) -> dict:
  out = {"kernel": conv_kernel(r.take(f"{key}.weight", (cout, cin, kh, kw)))}
  if bias:
    out["bias"] = r.take(f"{key}.bias", (cout,))
  return out


def _bn(r: StateDictReader, key: str, c: int) -> tuple[dict, dict]:
  params = {"scale": r.take(f"{key}.weight", (c,)), "bias": r.take(f"{key}.bias", (c,))}
  stats = {"mean": r.take(f"{key}.running_mean", (c,)), "var": r.take(f"{key}.running_var", (c,))}
  r.skip(f"{key}.num_batches_tracked")
  return params, stats


def _shared_bn(r: StateDictReader, keys: tuple[str, str], c: int, conflicts: list[str]) -> tuple[dict, dict]:
  """A BatchNorm registered under two names; reads whichever is stored, checks they agree."""
  stored = [k for k in keys if any(r.has(f"{k}.{p}") for p in _BN_PARAMS)]
  primary = stored[0] if stored else keys[0]
  params, stats = _bn(r, primary, c)
  for other in stored[1:]:
    p2, s2 = _bn(r, other, c)
    if not all(np.array_equal(a, b) for a, b in zip((*params.values(), *stats.values()),
                                                   (*p2.values(), *s2.values()))):
      conflicts.append(f"{other}.* differs from {primary}.* (they are one BatchNorm in GMA)")
  return params, stats


def _encoder(r: StateDictReader, prefix: str, out_dim: int, batch_norm: bool,
             conflicts: list[str]) -> tuple[dict, dict]:
  params: dict = {"conv1": _conv(r, f"{prefix}.conv1", 64, 3, 7, 7)}
  stats: dict = {}
  if batch_norm:
    params["norm1"], stats["norm1"] = _bn(r, f"{prefix}.norm1", 64)
  cin = 64
  for stage, (planes, stride) in enumerate(((64, 1), (96, 2), (128, 2)), start=1):
    for block in range(2):
      key, name = f"{prefix}.layer{stage}.{block}", f"layer{stage}_{block}"
      p = {"conv1": _conv(r, f"{key}.conv1", planes, cin, 3, 3),
           "conv2": _conv(r, f"{key}.conv2", planes, planes, 3, 3)}
      s: dict = {}
      if batch_norm:
        p["norm1"], s["norm1"] = _bn(r, f"{key}.norm1", planes)
        p["norm2"], s["norm2"] = _bn(r, f"{key}.norm2", planes)
      if block == 0 and stride != 1:
        p["downsample"] = _conv(r, f"{key}.downsample.0", planes, cin, 1, 1)
        if batch_norm:
          p["norm3"], s["norm3"] = _shared_bn(r, (f"{key}.downsample.1", f"{key}.norm3"), planes, conflicts)
      params[name] = p
      if s:
        stats[name] = s
      cin = planes
  params["conv2"] = _conv(r, f"{prefix}.conv2", out_dim, 128, 1, 1)
  return params, stats


def convert(sd: Mapping[str, np.ndarray], source: str = "<state_dict>", *, attention: str = "content",
            num_heads: int | None = None, max_pos_size: int = 160, corr_levels: int = 4,
            corr_radius: int = 4) -> dict:
  """GMA state dict -> ``{"params", "batch_stats"}`` for ``GMA(attention=..., num_heads=...)``.

  ``num_heads=None`` reads the head count off ``att.to_qk.weight``. The attention variant cannot be
  read off the weights (all variants store the positional tables): pass the one the checkpoint was
  trained with (``"content"`` for the published models).
  """
  from talkjax.models.gma_parts import ATTENTION_VARIANTS  # pylint: disable=g-import-not-at-top
  if attention not in ATTENTION_VARIANTS:
    raise CheckpointError(f"{source}: GMA attention variant must be one of {ATTENTION_VARIANTS}, "
                          f"got {attention!r}")
  sd = unwrap_state_dict(sd, source)
  dh = 128
  if num_heads is None:
    qk = sd.get("att.to_qk.weight")
    num_heads = max(1, int(np.shape(qk)[0]) // (2 * dh)) if qk is not None else 1
  inner = num_heads * dh
  r = StateDictReader(sd, source)
  conflicts: list[str] = []

  fnet, _ = _encoder(r, "fnet", 256, False, conflicts)
  cnet, cnet_stats = _encoder(r, "cnet", 256, True, conflicts)

  att: dict = {"to_qk": _conv(r, "att.to_qk", 2 * inner, 128, 1, 1, bias=False)}
  rows = 2 * max_pos_size - 1
  if attention == "content":
    for key in ("att.pos_emb.rel_height.weight", "att.pos_emb.rel_width.weight", "att.pos_emb.rel_ind"):
      r.skip(key)
  else:
    att["pos_emb"] = {"rel_height": {"embedding": r.take("att.pos_emb.rel_height.weight", (rows, dh))},
                      "rel_width": {"embedding": r.take("att.pos_emb.rel_width.weight", (rows, dh))}}
    if r.has("att.pos_emb.rel_ind"):
      ind = r.take("att.pos_emb.rel_ind", (max_pos_size, max_pos_size))
      expected = np.arange(max_pos_size)[None, :] - np.arange(max_pos_size)[:, None] + max_pos_size - 1
      if not np.array_equal(ind, expected):
        conflicts.append("att.pos_emb.rel_ind is not GMA's relative index table (u - x + max_pos_size - 1)")

  u = "update_block"
  cor_planes = corr_levels * (2 * corr_radius + 1) ** 2
  gru_in = 128 + 128 + 128 + 128  # hidden + context + motion + aggregated motion
  update = {
      "encoder": {
          "convc1": _conv(r, f"{u}.encoder.convc1", 256, cor_planes, 1, 1),
          "convc2": _conv(r, f"{u}.encoder.convc2", 192, 256, 3, 3),
          "convf1": _conv(r, f"{u}.encoder.convf1", 128, 2, 7, 7),
          "convf2": _conv(r, f"{u}.encoder.convf2", 64, 128, 3, 3),
          "conv": _conv(r, f"{u}.encoder.conv", 126, 256, 3, 3),
      },
      "aggregator": {"to_v": _conv(r, f"{u}.aggregator.to_v", inner, 128, 1, 1, bias=False),
                     "gamma": r.take(f"{u}.aggregator.gamma", (1,))},
      "gru": {f"conv{g}{i}": _conv(r, f"{u}.gru.conv{g}{i}", 128, gru_in, *k)
              for i, k in (("1", (1, 5)), ("2", (5, 1))) for g in "zrq"},
      "flow_head": {"conv1": _conv(r, f"{u}.flow_head.conv1", 256, 128, 3, 3),
                    "conv2": _conv(r, f"{u}.flow_head.conv2", 2, 256, 3, 3)},
      "mask_0": _conv(r, f"{u}.mask.0", 256, 128, 3, 3),
      "mask_2": _conv(r, f"{u}.mask.2", 64 * 9, 256, 1, 1),
  }
  if inner != 128:
    update["aggregator"]["project"] = _conv(r, f"{u}.aggregator.project", 128, inner, 1, 1, bias=False)

  r.finish()
  if conflicts:
    raise CheckpointError(f"{source}: inconsistent GMA state dict: " + "; ".join(conflicts))
  return {"params": {"fnet": fnet, "cnet": cnet, "att": att, "update_block": update},
          "batch_stats": {"cnet": cnet_stats}}


def _build(**overrides):
  from talkjax.models.gma import GMA  # pylint: disable=g-import-not-at-top
  return GMA(**overrides)


def _example_inputs(batch_size: int) -> tuple:
  rng = np.random.default_rng(0)
  shape = (batch_size, 128, 128, 3)
  return (rng.uniform(0, 255, shape).astype(np.float32), rng.uniform(0, 255, shape).astype(np.float32))


CONVERTERS = {
    "gma": Converter(
        build=_build,
        convert=convert,
        example_inputs=_example_inputs,
        inputs_doc=("image1, image2: (B, H, W, 3) float32 RGB in [0, 255] (RAFT's convention; normalised "
                    "to [-1, 1] inside), H, W >= 57, padded to a multiple of 8 inside ('sintel' replicate) "
                    "and cropped back. Returns the flow image1 -> image2, (B, H, W, 2) pixels, (dx, dy)."),
    ),
}
