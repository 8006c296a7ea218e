"""Repository-level contracts: the README's commands, CI, packaging and vendored files."""

import os
import re
import tomllib

import pytest


def _readme(repo_root):
  with open(os.path.join(repo_root, "README.md"), encoding="utf-8") as f:
    return f.read()


def test_ci_runs_exactly_the_readme_test_command(repo_root):
  readme = _readme(repo_root)
  m = re.search(r"<!-- test-command -->\s*```(?:bash|sh)?\n(.+?)\n```", readme, re.S)
  assert m, "README must mark its test command with <!-- test-command -->"
  command = m.group(1).strip()
  with open(os.path.join(repo_root, ".ci", "run"), encoding="utf-8") as f:
    ci_lines = [l.strip() for l in f if l.strip() and not l.lstrip().startswith("#")]
  assert command in ci_lines, f"README test command {command!r} not found verbatim in .ci/run"


def test_readme_shows_main_job_command(repo_root):
  readme = _readme(repo_root)
  m = re.search(r"<!-- main-command -->\s*```(?:bash|sh)?\n(.+?)\n```", readme, re.S)
  assert m, "README must mark its main-job command with <!-- main-command -->"
  assert "python -m experiments.train --config=" in m.group(1)


def test_lower_bounds_equal_tested_constraints(repo_root):
  with open(os.path.join(repo_root, "pyproject.toml"), "rb") as f:
    project = tomllib.load(f)["project"]
  pins = {}
  with open(os.path.join(repo_root, "tools", "constraints.txt")) as f:
    for line in f:
      line = line.split("#")[0].strip()
      if line:
        name, version = line.split("==")
        pins[name.lower()] = version
  deps = project["dependencies"] + project["optional-dependencies"]["test"]
  for dep in deps:
    m = re.match(r"([A-Za-z0-9_.\-]+)\s*(>=|==)\s*([^,;\s]+)", dep)
    assert m, f"dependency without a tested lower bound: {dep}"
    name, _, version = m.groups()
    assert pins.get(name.lower()) == version, f"{name}: bound {version} is not the tested pin {pins.get(name.lower())}"


@pytest.mark.parametrize("name", ["face_detection_short_range.tflite", "face_detection_full_range.tflite",
                                  "face_landmark.tflite"])
def test_vendored_models_keep_their_licence(repo_root, name):
  folder = os.path.join(repo_root, "third_party", "mediapipe")
  assert os.path.getsize(os.path.join(folder, name)) > 100_000
  licences = [f for f in os.listdir(folder) if f.startswith("LICENSE")]
  assert any("Apache" in l for l in licences)
