#!/bin/bash
# One call on a lent GPU machine (the `device` tool): installs the wheels carried in .whl/, then runs
# what is named in $@ among: infer (benchmarks/infer.py generator alone, float32 and bfloat16),
# train:CONFIG[:SEED] (experiments.train on the embedded corpus, metrics copied to $OUT).
#   env:KEY=VALUE (exported for the jobs after it), flag:--config.X=V (passed to the jobs after it).
# Usage there: bash benchmarks/gpu_session.sh infer train:gaussian_renderer:runlocal:1 ...
# A syncnet job also runs `talkjax.metrics.sync_expert --check` on its run.
#
# The GPU image has jax, flax, optax, orbax and chex but not the rest of talkjax's dependencies:
# download them here as Python 3.12 manylinux wheels into .whl/ (git-ignored via .git/info/exclude):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     grain array-record dm-pix ml-collections av librosa soundfile soxr audioread pooch tensorboardX \
#     lazy-loader decorator portpicker platformdirs cffi pycparser
# (the versions of tools/constraints.txt), then carry .whl with the call.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -c "import jax; print(jax.__version__, jax.devices())" 2>&1 | tail -1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
tag=""; flags=""
for job in "$@"; do
  case $job in
    infer)
      for dt in float32 bfloat16; do
        python3 benchmarks/infer.py --dtype=$dt --skip_torch --skip_e2e --repeats 20 2>&1 | tee -a "$OUT/infer.log" | tail -8
      done ;;
    env:*)  # env:KEY=VALUE, for the jobs after it; their names get a tag
      export "${job#env:}"; tag="_$(echo ${job#env:} | tr -c 'a-zA-Z0-9\n' '_')" ;;
    flag:*)  # flag:--config.X=V, for the jobs after it; their names get a tag
      flags="$flags ${job#flag:}"; tag="${tag}_$(echo ${job#flag:--config.} | tr -c 'a-zA-Z0-9\n' '_')" ;;
    train:*)
      spec=${job#train:}; cfg=${spec%:*}; seed=${spec##*:}
      [ "$cfg" = "$spec" ] && seed=""
      name=$(echo "${cfg}_s${seed}${tag}" | tr ':,' '__')
      extra=""; [ -n "$seed" ] && extra="--config.seed=$seed"
      start=$(date +%s)
      python3 -m experiments.train --config=$cfg $extra $flags --workdir=/tmp/runs/$name > "$OUT/$name.log" 2>&1
      echo "$name rc=$? wall $(( $(date +%s) - start )) s"
      cp /tmp/runs/$name/metrics.jsonl "$OUT/$name.metrics.jsonl" 2>/dev/null
      if [[ $cfg == syncnet* ]]; then
        python3 -m talkjax.metrics.sync_expert --workdir=/tmp/runs/$name --check --json="$OUT/$name.check.json" \
          >> "$OUT/$name.log" 2>&1; echo "$name check rc=$?"; tail -12 "$OUT/$name.log"
      fi ;;
  esac
done
