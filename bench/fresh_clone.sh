#!/usr/bin/env bash
# Time the README's two quickstart commands in a fresh clone, as a new user would run them,
# and check that the clone is clean afterwards (data.dvc's hash reproduced, nothing modified).
#   bash bench/fresh_clone.sh [DEST]        (DEST defaults to a new temp folder)
set -euo pipefail
src=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
dest=${1:-$(mktemp -d)/spine-seg}
git clone -q "$src" "$dest"
cd "$dest"
t0=$(date +%s); make pipeline > pipeline.log 2>&1; t1=$(date +%s)
make test > test.log 2>&1; t2=$(date +%s)
echo "make pipeline (install + data + dvc repro): $((t1 - t0)) s"
echo "make test:                                 $((t2 - t1)) s   $(tail -n 1 test.log)"
echo "dvc status: $(.venv/bin/dvc status 2>&1 | tr '\n' ' ')"
echo "git status (files differing from the committed reference run):"
git status --porcelain -- . ':!pipeline.log' ':!test.log' | sed 's/^/  /'
