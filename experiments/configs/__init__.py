"""Experiment configs: one module ``experiments/configs/<name>.py`` per experiment.

Each defines ``get_config(arg=None) -> ml_collections.ConfigDict`` (locked) whose docstring gives the
exact command and the expected result and runtime. ``arg`` selects variants, comma-separated
(``dck_unet:no_dck,runlocal``); :func:`parse_arg` turns it into flags so config files stay short.

Resolution (what ``python -m experiments.train --config=NAME[:ARGS] --config.x.y=v`` does):
:func:`get_config` imports the module by name, calls ``get_config(ARGS)`` and applies the overrides
with :func:`apply_overrides`. Unknown names, variants and fields raise ``talkjax.errors.ConfigError``
listing the valid ones.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from typing import Any, Iterable, Mapping, Sequence

import ml_collections

from talkjax.errors import ConfigError

__all__ = ["apply_overrides", "get_config", "list_configs", "parse_arg", "split_override_args"]


def list_configs() -> list[str]:
  """Names of the experiment configs (modules with ``get_config`` in this package)."""
  names = []
  for info in pkgutil.iter_modules(__path__):
    if not info.name.startswith("_"):
      names.append(info.name)
  return sorted(names)


def parse_arg(arg: str | None, **variants: Any) -> ml_collections.ConfigDict:
  """Parses a config argument like ``"runlocal,no_dck,res=128"`` against the allowed variants.

  Each keyword gives a variant and its default: a bool default makes a flag (``runlocal`` sets it
  True); any other default makes a ``key=value`` variant whose value is parsed to the default's type
  (``res=128``). Returns a ConfigDict with every variant.

  Raises:
    ConfigError: an unknown variant, a flag given a value, or a value of the wrong type.
  """
  out = dict(variants)
  if not arg:
    return ml_collections.ConfigDict(out)

  def valid() -> str:
    return ", ".join(k if isinstance(v, bool) else f"{k}=<{type(v).__name__}>" for k, v in variants.items())

  for item in (s.strip() for s in arg.split(",")):
    if not item:
      continue
    key, has_value, text = item.partition("=")
    key = key.strip()
    if key not in variants:
      raise ConfigError(f"unknown variant {key!r}; valid variants: {valid() or 'none'}")
    default = variants[key]
    if isinstance(default, bool):
      if has_value:
        if text.strip().lower() not in ("true", "false", "1", "0"):
          raise ConfigError(f"variant {key!r} is a flag; write {key} (or {key}=true/false), not {item!r}")
        out[key] = text.strip().lower() in ("true", "1")
      else:
        out[key] = True
    elif not has_value:
      raise ConfigError(f"variant {key!r} needs a value ({key}=<{type(default).__name__}>)")
    else:
      out[key] = _parse_value(text.strip(), default, f"variant {key!r}")
  return ml_collections.ConfigDict(out)


def _parse_value(text: str, default: Any, what: str) -> Any:
  """Parses ``text`` to the type of ``default`` (None default: a Python literal, else the string)."""
  try:
    if isinstance(default, bool):
      lowered = text.lower()
      if lowered not in ("true", "false", "1", "0"):
        raise ValueError(text)
      return lowered in ("true", "1")
    if isinstance(default, int):
      return int(text)
    if isinstance(default, float):
      return float(text)
    if isinstance(default, str):
      return text
    if isinstance(default, (tuple, list)):
      value = ast.literal_eval(text)
      value = value if isinstance(value, (tuple, list)) else (value,)
      return type(default)(value)
  except (ValueError, SyntaxError) as e:
    raise ConfigError(f"{what}: cannot parse {text!r} as {type(default).__name__}") from e
  if default is None:
    if text.lower() in ("none", "null"):
      return None
    try:
      return ast.literal_eval(text)
    except (ValueError, SyntaxError):
      return text
  raise ConfigError(f"{what}: cannot override a value of type {type(default).__name__}")


def _valid_fields(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  fields = []
  for key in config.keys():
    value = config[key]
    fields.append(prefix + key)
    if isinstance(value, ml_collections.ConfigDict):
      fields.extend(_valid_fields(value, prefix + key + "."))
  return fields


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> ml_collections.ConfigDict:
  """Sets dotted fields (``{"optim.generator.lr": "2e-4"}``) on ``config`` in place and returns it.

  String values are parsed to the existing field's type (fields that are None accept a Python
  literal or a plain string); non-string values are assigned as given. Unknown fields are an error
  listing the valid ones; the config stays locked (no new fields).
  """
  items = overrides.items() if isinstance(overrides, Mapping) else overrides
  for dotted, value in items:
    parts = dotted.split(".")
    node = config
    for i, part in enumerate(parts):
      if not isinstance(node, ml_collections.ConfigDict) or part not in node:
        parent = ".".join(parts[:i])
        siblings = list(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
        where = f"config.{parent}" if parent else "config"
        raise ConfigError(f"unknown config field {dotted!r}: {where} has no {part!r}; valid fields there: "
                          f"{', '.join(sorted(siblings)) or 'none (not a ConfigDict)'}")
      if i < len(parts) - 1:
        node = node[part]
    key = parts[-1]
    current = node[key]
    if isinstance(current, ml_collections.ConfigDict):
      raise ConfigError(f"config field {dotted!r} is a group; override its fields: "
                        f"{', '.join(f'{dotted}.{k}' for k in sorted(current.keys()))}")
    if isinstance(value, str):
      value = _parse_value(value, current, f"--config.{dotted}")
    try:
      node[key] = value
    except (TypeError, ValueError) as e:
      raise ConfigError(f"--config.{dotted}: {e}") from e
  return config


def get_config(spec: str,
               overrides: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()) -> ml_collections.ConfigDict:
  """Resolves ``"NAME[:ARGS]"`` to a locked config and applies ``overrides``.

  Raises:
    ConfigError: unknown config name (lists the available ones), unknown variant (lists the valid
      variants of that config), or unknown/mistyped override field.
  """
  name, _, arg = spec.partition(":")
  available = list_configs()
  if name not in available:
    raise ConfigError(f"unknown config {name!r}; available configs: {', '.join(available)}")
  module = importlib.import_module(f"{__name__}.{name}")
  if not callable(getattr(module, "get_config", None)):
    raise ConfigError(f"experiments/configs/{name}.py has no get_config(arg=None)")
  try:
    config = module.get_config(arg or None)
  except ConfigError as e:
    raise ConfigError(f"config {name!r}: {e}") from e
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f"experiments/configs/{name}.py: get_config returned {type(config).__name__}, "
                      "not a ConfigDict")
  config.lock()
  return apply_overrides(config, overrides)


def split_override_args(argv: Sequence[str], flag: str = "config") -> tuple[list[str], list[tuple[str, str]]]:
  """Separates ``--config.x.y=v`` / ``--config.x.y v`` overrides from the other command-line args.

  Returns (remaining argv, [(dotted field, value string), ...]) in command-line order.
  """
  rest, overrides = [], []
  prefixes = (f"--{flag}.", f"-{flag}.")
  i = 0
  while i < len(argv):
    arg = argv[i]
    if arg == "--":
      rest.extend(argv[i:])
      break
    if arg.startswith(prefixes):
      body = arg.split(".", 1)[1]
      if "=" in body:
        field, value = body.split("=", 1)
      elif i + 1 < len(argv):
        field, value = body, argv[i + 1]
        i += 1
      else:
        raise ConfigError(f"{arg}: missing value (write {arg}=VALUE)")
      overrides.append((field, value))
    else:
      rest.append(arg)
    i += 1
  return rest, overrides
