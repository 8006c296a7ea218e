"""Shared pytest set-up.

XLA_FLAGS must be set before JAX is imported anywhere: every test process sees 8 host CPU devices,
so sharding tests can build 1- and 8-device meshes in-process (jit still defaults to device 0).
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
# Keep each xdist worker from oversubscribing the (2-core) CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def repo_root() -> str:
  return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
