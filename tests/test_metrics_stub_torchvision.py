"""A stand-in for the few torchvision pieces that pytorch-fid and lpips import (torchvision has no
CPU wheel here). Hand-built following torchvision's layouts (module names, layer order, defaults) so
that the *real* ``pytorch_fid.inception`` and ``lpips`` code runs on top of it as the parity reference:

- ``torchvision.models.inception``: ``BasicConv2d`` and ``InceptionA..E`` (torchvision's forward for
  B and D; pytorch-fid overrides A, C and E with its FID variants), ``inception_v3(...)``;
- ``torchvision.models.vgg16(pretrained=False)`` / ``alexnet(pretrained=False)`` with torchvision's
  ``features`` ``nn.Sequential`` index layout (what lpips slices);
- ``torchvision.transforms`` (an empty module: pytorch-fid's ``fid_score`` imports it).

Use :func:`install` with pytest's ``monkeypatch`` so the stub disappears after the test. This file
holds no tests (it is named ``test_metrics_*`` because it belongs to the metrics test suite);
``test_metrics_fid.py`` and ``test_metrics_lpips.py`` import it.
"""

from __future__ import annotations

import sys
import types

import torch
import torch.nn.functional as F
from torch import nn


class BasicConv2d(nn.Module):
  def __init__(self, in_channels, out_channels, **kwargs):
    super().__init__()
    self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
    self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

  def forward(self, x):
    return F.relu(self.bn(self.conv(x)), inplace=True)


class InceptionA(nn.Module):
  def __init__(self, in_channels, pool_features, conv_block=None):
    super().__init__()
    self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
    self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
    self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
    self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
    self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
    self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
    self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)


class InceptionB(nn.Module):
  def __init__(self, in_channels, conv_block=None):
    super().__init__()
    self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
    self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
    self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
    self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

  def forward(self, x):
    b3 = self.branch3x3(x)
    bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
    return torch.cat([b3, bd, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionC(nn.Module):
  def __init__(self, in_channels, channels_7x7, conv_block=None):
    super().__init__()
    c7 = channels_7x7
    self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
    self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
    self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
    self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
    self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
    self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
    self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
    self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
    self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
    self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)


class InceptionD(nn.Module):
  def __init__(self, in_channels, conv_block=None):
    super().__init__()
    self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
    self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
    self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
    self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
    self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
    self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

  def forward(self, x):
    b3 = self.branch3x3_2(self.branch3x3_1(x))
    b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
    return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
  def __init__(self, in_channels, conv_block=None):
    super().__init__()
    self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
    self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
    self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
    self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
    self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
    self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
    self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
    self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
    self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)


class Inception3(nn.Module):
  """torchvision's Inception3 module tree without the auxiliary classifier."""

  def __init__(self, num_classes=1000, aux_logits=False, init_weights=False, **unused):
    super().__init__()
    assert not aux_logits
    self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
    self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
    self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
    self.maxpool1 = nn.MaxPool2d(kernel_size=3, stride=2)
    self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
    self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
    self.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2)
    self.Mixed_5b = InceptionA(192, pool_features=32)
    self.Mixed_5c = InceptionA(256, pool_features=64)
    self.Mixed_5d = InceptionA(288, pool_features=64)
    self.Mixed_6a = InceptionB(288)
    self.Mixed_6b = InceptionC(768, channels_7x7=128)
    self.Mixed_6c = InceptionC(768, channels_7x7=160)
    self.Mixed_6d = InceptionC(768, channels_7x7=160)
    self.Mixed_6e = InceptionC(768, channels_7x7=192)
    self.Mixed_7a = InceptionD(768)
    self.Mixed_7b = InceptionE(1280)
    self.Mixed_7c = InceptionE(2048)
    self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    self.dropout = nn.Dropout()
    self.fc = nn.Linear(2048, num_classes)


def inception_v3(*, weights=None, pretrained=False, **kwargs):
  assert weights is None and not pretrained, "the stub has no pretrained weights"
  return Inception3(**kwargs)


def _features(cfg):
  layers, c = [], 3
  for v in cfg:
    if v == "M":
      layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    else:
      layers += [nn.Conv2d(c, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
      c = v
  return nn.Sequential(*layers)


class _Net(nn.Module):
  def __init__(self, features):
    super().__init__()
    self.features = features


def vgg16(pretrained=False, **unused):
  assert not pretrained
  return _Net(_features([64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                         512, 512, 512, "M"]))


def alexnet(pretrained=False, **unused):
  assert not pretrained
  return _Net(nn.Sequential(
      nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
      nn.MaxPool2d(kernel_size=3, stride=2),
      nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
      nn.MaxPool2d(kernel_size=3, stride=2),
      nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
      nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
      nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
      nn.MaxPool2d(kernel_size=3, stride=2)))


def install(monkeypatch) -> types.ModuleType:
  """Puts the stub into ``sys.modules`` (undone by ``monkeypatch``) and forgets modules that imported
  an earlier stub, so each test imports pytorch_fid / lpips afresh on top of this one."""
  tv = types.ModuleType("torchvision")
  tv.__version__ = "0.20.0"
  models = types.ModuleType("torchvision.models")
  inception = types.ModuleType("torchvision.models.inception")
  for cls in (BasicConv2d, InceptionA, InceptionB, InceptionC, InceptionD, InceptionE, Inception3):
    setattr(inception, cls.__name__, cls)
  models.inception = inception
  models.inception_v3 = inception_v3
  models.vgg16 = vgg16
  models.alexnet = alexnet
  transforms = types.ModuleType("torchvision.transforms")
  tv.models, tv.transforms = models, transforms
  for name, mod in (("torchvision", tv), ("torchvision.models", models),
                    ("torchvision.models.inception", inception), ("torchvision.transforms", transforms)):
    monkeypatch.setitem(sys.modules, name, mod)
  for name in list(sys.modules):
    if name.startswith(("pytorch_fid", "lpips")):
      monkeypatch.delitem(sys.modules, name)
  return tv
