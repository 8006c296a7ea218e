"""Config resolution: names, variants, overrides, errors, and the launcher's flag handling."""

import os
import subprocess
import sys

import ml_collections
import pytest

from experiments import configs
from talkjax.errors import ConfigError
from talkjax.train import validate_config

REQUIRED = {"seed": int, "batch_size": int, "total_steps": int, "log_every": int, "checkpoint_every": int,
            "eval_every": int, "mesh": ml_collections.ConfigDict, "data": ml_collections.ConfigDict,
            "task": str}


def test_list_configs_finds_the_toy_config():
  names = configs.list_configs()
  assert "toy_gan" in names
  assert all(not n.startswith("_") for n in names)


@pytest.mark.parametrize("name", configs.list_configs())
@pytest.mark.parametrize("arg", [None, "runlocal"])
def test_every_config_has_the_required_fields_and_a_documented_command(name, arg):
  config = configs.get_config(f"{name}:{arg}" if arg else name)
  assert config.is_locked
  for field, kind in REQUIRED.items():
    assert isinstance(config[field], kind), field
  assert "root" in config.data
  assert "optim" in config
  validate_config(config)
  from talkjax import tasks
  assert config.task in tasks.list_tasks()
  module = __import__(f"experiments.configs.{name}", fromlist=["get_config"])
  assert f"python -m experiments.train --config={name}" in module.__doc__


def test_variants_are_parsed_and_combined():
  base = configs.get_config("toy_gan")
  local = configs.get_config("toy_gan:runlocal")
  both = configs.get_config("toy_gan:runlocal,no_gan")
  assert (base.batch_size, base.total_steps, base.model.image_size) == (64, 2000, 32)
  assert (local.batch_size, local.total_steps, local.model.image_size) == (8, 100, 16)
  assert base.loss_weights.gan == 0.01 and local.loss_weights.gan == 0.01
  assert both.batch_size == 8 and both.loss_weights.gan == 0.0
  assert configs.get_config("toy_gan:nan_at=7").debug.nan_at_step == 7
  assert configs.get_config("toy_gan: runlocal , nan_at=3").debug.nan_at_step == 3


def test_parse_arg_types_and_errors():
  arg = configs.parse_arg("fast,res=128,name=x,scale=0.5,flag=false", fast=False, flag=True, res=256,
                          name="a", scale=1.0)
  assert arg.to_dict() == {"fast": True, "flag": False, "res": 128, "name": "x", "scale": 0.5}
  assert configs.parse_arg(None, fast=False).fast is False
  with pytest.raises(ConfigError, match=r"unknown variant 'slow'; valid variants: fast, res=<int>"):
    configs.parse_arg("slow", fast=False, res=256)
  with pytest.raises(ConfigError, match=r"variant 'res' needs a value \(res=<int>\)"):
    configs.parse_arg("res", res=256)
  with pytest.raises(ConfigError, match=r"variant 'res': cannot parse 'big' as int"):
    configs.parse_arg("res=big", res=256)
  with pytest.raises(ConfigError, match=r"variant 'fast' is a flag"):
    configs.parse_arg("fast=yes", fast=False)


def test_overrides_are_typed_by_the_existing_field():
  config = configs.get_config("toy_gan:runlocal", [
      ("seed", "5"), ("optim.generator.lr", "2e-4"), ("mesh.shape", "(1,)"), ("data.root", "/data/lrs2"),
      ("async_checkpoints", "false"), ("frozen.features", "None"), ("gan_start.below", "0.2")])
  assert config.seed == 5 and isinstance(config.seed, int)
  assert config.optim.generator.lr == pytest.approx(2e-4)
  assert config.mesh.shape == (1,)
  assert config.data.root == "/data/lrs2"
  assert config.async_checkpoints is False
  assert config.frozen.features is None
  assert config.gan_start.below == pytest.approx(0.2)
  # Non-string values are assigned as given; the config stays locked.
  config = configs.get_config("toy_gan", {"total_steps": 3, "mesh.shape": (2, 4)})
  assert config.total_steps == 3 and config.mesh.shape == (2, 4) and config.is_locked


def test_resolution_errors_list_the_valid_choices():
  with pytest.raises(ConfigError, match=r"unknown config 'nope'; available configs: .*toy_gan"):
    configs.get_config("nope")
  with pytest.raises(ConfigError, match=r"config 'toy_gan': unknown variant 'fast'; valid variants: "
                                        r"runlocal, no_gan, nan_at=<int>"):
    configs.get_config("toy_gan:fast")
  with pytest.raises(ConfigError, match=r"unknown config field 'optim.generator.learning_rate': "
                                        r"config\.optim\.generator has no 'learning_rate'; "
                                        r"valid fields there: b1, b2, lr, name"):
    configs.get_config("toy_gan", {"optim.generator.learning_rate": "1"})
  with pytest.raises(ConfigError, match=r"config has no 'sede'; valid fields there: .*seed"):
    configs.get_config("toy_gan", {"sede": "1"})
  with pytest.raises(ConfigError, match=r"--config\.seed: cannot parse 'abc' as int"):
    configs.get_config("toy_gan", {"seed": "abc"})
  with pytest.raises(ConfigError, match=r"'optim' is a group; override its fields"):
    configs.get_config("toy_gan", {"optim": "x"})
  with pytest.raises(ConfigError, match=r"--config\.total_steps"):
    configs.get_config("toy_gan", {"total_steps": 1.5})


def test_split_override_args():
  argv = ["prog", "--config=toy_gan", "--config.seed=3", "--workdir", "/w", "--config.optim.generator.lr",
          "1e-3", "--multihost"]
  rest, overrides = configs.split_override_args(argv)
  assert rest == ["prog", "--config=toy_gan", "--workdir", "/w", "--multihost"]
  assert overrides == [("seed", "3"), ("optim.generator.lr", "1e-3")]
  with pytest.raises(ConfigError, match="missing value"):
    configs.split_override_args(["prog", "--config.seed"])


def test_validate_config_names_missing_and_bad_fields():
  config = configs.get_config("toy_gan")
  with config.unlocked():
    del config["eval_every"]
  with pytest.raises(ConfigError, match=r"lacks required field\(s\) eval_every"):
    validate_config(config)
  with pytest.raises(ConfigError, match=r"config\.total_steps must be a positive integer, got 0"):
    validate_config(configs.get_config("toy_gan", {"total_steps": 0}))


def test_launcher_reports_config_errors_cleanly(tmp_path, repo_root):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  result = subprocess.run([sys.executable, "-m", "experiments.train", "--config=toy_gan:runlocal",
                           f"--workdir={tmp_path}", "--config.optim.generator.lrr=1"],
                          cwd=repo_root, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 1
  assert "ConfigError: unknown config field 'optim.generator.lrr'" in result.stderr
  assert "Traceback" not in result.stderr
