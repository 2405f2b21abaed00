#!/usr/bin/env bash
# Install the pinned requirements and run the test suite (2 CPU cores: about 2 minutes on a fresh clone).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet -r requirements.txt
python -m pytest -q -n 2 tests
