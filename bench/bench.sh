#!/usr/bin/env bash
# Benchmarks (not part of the tests): prints figures, times nothing in
# tests. First the two micro benchmarks (the POP3 engine alone; delivery
# into a Maildir with syncing on), then the end-to-end scenarios of
# bench/bench.py against a throwaway Dovecot (B1-B10, most beside a
# network-only and a disk-only reference), and last a short run of
# bench/scale.py (1,000 accounts, 200 TLS polls at once against
# bench_loadsrv; the full one: python3 bench/scale.py). Arguments go to
# bench/bench.py:
#
#   bash bench/bench.sh                 # full: about 10 minutes
#   bash bench/bench.sh --quick         # smoke run: under a minute
#   bash bench/bench.sh --runs 5 --only B1,B2
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/deps.sh
if ! log=$(bash tools/build.sh build 2>&1); then
	printf '%s\n' "$log" >&2
	exit 1
fi

echo "== micro benchmarks"
build/bench_pop3 256
# On the file system of the work tree, like a Maildir in a home would be.
dir=$(mktemp -d "$PWD/build/bench-micro-XXXXXX")
trap 'rm -rf "$dir"' EXIT
build/bench_deliver "$dir" 2000 4096
build/bench_deliver "$dir/big" 200 102400
rm -rf "$dir"

echo
echo "== end to end (bench/bench.py)"
python3 bench/bench.py "$@"

echo
echo "== at scale (bench/scale.py --quick)"
python3 bench/scale.py --quick
