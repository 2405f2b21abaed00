#!/usr/bin/env bash
# Install the pinned requirements and the package (editable), check the layer rule, run the test suite
# (2 CPU cores: a few minutes on a fresh clone).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet -r requirements.txt -e .
# console scripts (lint-imports, mmrag-*) live beside the interpreter pip installed into
PATH="$(python -c 'import os, sys; print(os.path.dirname(sys.executable))'):$PATH"
lint-imports
python -m pytest -q -n 2 tests
