#!/usr/bin/env bash
# The package as users get it: build the wheel, install it (no dependencies: the venv has them)
# into a folder of its own, and run the tiny OASIS study by the name of its shipped config from a
# folder outside the checkout. Fails if the configs are not in the wheel or not found from it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$PWD/.venv/bin/python}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir "$work/dist" .
"$PYTHON" -m pip install --quiet --no-deps --target "$work/site" "$work"/dist/*.whl
mkdir "$work/cwd"
cd "$work/cwd"
# The installed copy, not the checkout, must be the one imported.
PYTHONPATH="$work/site" "$PYTHON" -c "
import augmentor, pipelines, sys
for module in (augmentor, pipelines):
    if not module.__file__.startswith('$work/site/'):
        sys.exit(f'imported {module.__file__}, not the wheel installed in $work/site')
"
PYTHONPATH="$work/site" OMP_NUM_THREADS=1 "$PYTHON" -m augmentor.oasis --config oasis_tiny \
    --seeds 1 --methods real,riemannian --out "$work/out"
test -f "$work/out/report/summary.csv"
echo "wheel check passed: the tiny OASIS study ran from the installed wheel with its shipped config"
