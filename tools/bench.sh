#!/usr/bin/env bash
# Benchmarks (not part of the tests): the POP3 engine alone, and delivery
# into a Maildir with syncing on. Prints figures; times nothing in tests.
#
#   bash tools/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/deps.sh
if ! log=$(bash tools/build.sh build 2>&1); then
	printf '%s\n' "$log" >&2
	exit 1
fi
build/bench_pop3 256
# On the file system of the work tree, like a Maildir in a home would be.
dir=$(mktemp -d "$PWD/build/bench-XXXXXX")
trap 'rm -rf "$dir"' EXIT
build/bench_deliver "$dir" 2000 4096
build/bench_deliver "$dir/big" 200 102400
