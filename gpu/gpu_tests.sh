#!/usr/bin/env bash
# The tests that need a CUDA device (skipped on the CPU): GPU search == CPU search, CUDA-graph replay ==
# eager beam search, the device corpus constraint == the host one, nvJPEG decode, pinned side-stream
# copies, fused optimiser defaults. Run there beside the other scripts (they are small):
#   GPU=1 OUT=/tmp/out bash gpu/gpu_tests.sh
# Writes $OUT/gpu_tests.txt (pytest's report with the skip reasons) and $OUT/gpu_tests.xml (JUnit).
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:?set OUT}; mkdir -p "$OUT"
export CUDA_VISIBLE_DEVICES=${GPU:-0} HF_HUB_OFFLINE=1 OMP_NUM_THREADS=2
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
timeout 420 python -m pytest -q -rs -p no:cacheprovider --junitxml="$OUT/gpu_tests.xml" \
  tests/retrieval/test_exact_search.py tests/retrieval/test_exact_search_rerank.py tests/retrieval/test_beam_decoders.py \
  tests/retrieval/test_device_constraint.py \
  tests/retrieval/test_clip_embedder.py tests/retrieval/test_image_pipeline.py tests/runners/test_train_step.py \
  tests/runners/test_compilation.py > "$OUT/gpu_tests.txt" 2>&1
echo "pytest exit $?" >> "$OUT/gpu_tests.txt"
tail -n 15 "$OUT/gpu_tests.txt"
