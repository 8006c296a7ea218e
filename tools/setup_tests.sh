#!/usr/bin/env bash
# Installs everything the talkjax test suite needs on a fresh machine; used by the README's test
# command and (through it) by .ci/run.
#  1. Debian packages the tests use for real inputs (espeak-ng speech), when missing.
#  2. talkjax itself with its [test] extra, pinned to the tested versions (tools/constraints.txt).
#  3. The PyTorch reference packages, --no-deps: their declared dependencies conflict with ours
#     (lipsync pins librosa<0.11 and av<15; syncnet-python pulls torchvision, which has no CPU build
#     here). What their model/audio modules really import comes from the [test] extra.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v espeak-ng >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup_tests] installing espeak-ng (apt)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null
  else
    echo "[setup_tests] espeak-ng is missing and cannot be installed without root/apt; install it first" >&2
    exit 1
  fi
fi

python -m pip install -q --disable-pip-version-check -c tools/constraints.txt -e ".[test]"
python -m pip install -q --disable-pip-version-check --no-deps -r tools/reference-packages.txt
echo "[setup_tests] done"
