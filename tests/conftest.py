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


@pytest.fixture(scope="session")
def xla_cache(tmp_path_factory) -> str:
  """A persistent XLA compilation cache shared by the test processes (xdist workers and the
  subprocesses given ``JAX_COMPILATION_CACHE_DIR``); an existing setting wins. Returns its path."""
  import jax  # pylint: disable=g-import-not-at-top
  base = tmp_path_factory.getbasetemp()
  path = str((base.parent if base.name.startswith("popen-") else base) / "xla_cache")
  if not jax.config.jax_compilation_cache_dir:
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
  return jax.config.jax_compilation_cache_dir


# A tiny preprocessed synthetic corpus (3 speakers x 2 clips x 2 s, with pairs), built once per test
# session and shared by the xdist workers through the embedded-corpus cache lock.
TINY_CORPUS = dict(speakers=3, clips=2, duration=2.0, video_size=128, size=96, face_size=128)


def _shared_dir(tmp_path_factory) -> str:
  base = tmp_path_factory.getbasetemp()
  # Under xdist every worker has its own basetemp below a common parent: share the parent.
  return str(base.parent / "talkjax-data" if os.environ.get("PYTEST_XDIST_WORKER") else base / "talkjax-data")


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> str:
  """Root of a preprocessed tiny synthetic corpus (train and eval splits)."""
  from talkjax.data import embedded  # pylint: disable=g-import-not-at-top
  return embedded.ensure_corpus(_shared_dir(tmp_path_factory), preset="runlocal", progress=False, workers=0,
                                **TINY_CORPUS)
