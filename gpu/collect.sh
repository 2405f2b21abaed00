#!/usr/bin/env bash
# There: copy /tmp/results (gpu/lease_all.sh) to $OUT as one tar (the device tool brings back at most 8
# files), plus a short status on stdout. Safe to call while phases still run.
R=/tmp/results
cat $R/phases.txt 2>/dev/null; ls $R; for f in $R/*/rc.txt; do echo "$f: $(cat $f)"; done 2>/dev/null
tar czf $OUT/results.tgz -C /tmp results 2>/dev/null; ls -la $OUT
nvidia-smi --query-gpu=index,utilization.gpu,memory.used --format=csv,noheader
