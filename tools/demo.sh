#!/usr/bin/env bash
# The demo: install what is missing, build, and fetch two mailboxes from a
# throwaway Dovecot into Maildirs under ./demo-out (see tools/demo.py).
#
#   bash tools/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s.%N)
echo "demo: the build's packages and Dovecot (installed on the first run only)"
bash tools/deps.sh --demo
echo "demo: building popfetchd in build/"
# The build's output only matters when it fails.
if ! log=$(bash tools/build.sh build 2>&1); then
	printf '%s\n' "$log" >&2
	exit 1
fi
exec python3 tools/demo.py --binary build/popfetchd --out demo-out \
	--started "$started"
