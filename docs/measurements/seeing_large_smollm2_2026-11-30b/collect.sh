#!/bin/bash
# Copy what lease_a.sh has so far to $OUT (top level: summary, logs, answers, the chosen checkpoint in parts).
R=/tmp/la
python - <<'PY' > $OUT/summary.json
import json, pathlib
R = pathlib.Path("/tmp/la"); out = {"done": (R / "DONE").exists(), "best": (R / "BEST").read_text().strip() if (R / "BEST").exists() else None}
for f in sorted(R.glob("eval_*/results.json")):
    out[f.parent.name] = json.loads(f.read_text())
for f in sorted(R.glob("*/metrics.jsonl")):
    lines = f.read_text().splitlines()
    out["train_" + f.parent.name] = [json.loads(l) for l in lines[-2:]] if lines else []
print(json.dumps(out))
PY
cat $OUT/summary.json | head -c 3000; echo
tar czf $OUT/logs.tgz -C $R $(cd $R && ls *.log */metrics.jsonl */config.yaml 2>/dev/null) 2>/dev/null
tar czf $OUT/answers.tgz -C $R $(cd $R && ls eval_*/answers_*.jsonl 2>/dev/null) 2>/dev/null
b=$(cat $R/BEST 2>/dev/null)
if [ -n "$b" ] && [ -d $R/$b/final ] && [ "$(du -sm $R/$b/final | cut -f1)" -lt 60 ]; then
  tar czf /tmp/ckpt.tgz -C $R $b/final && split -b 15m /tmp/ckpt.tgz $OUT/ckpt.tgz.part && sha256sum /tmp/ckpt.tgz > $OUT/ckpt.sha256
fi
ls -la $OUT; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv
