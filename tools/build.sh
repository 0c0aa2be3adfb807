#!/usr/bin/env bash
# Configure (or reconfigure) and compile one build directory.
#
#   bash tools/build.sh [DIR [MESON_OPTION...]]     DIR defaults to "build"
#
# Run tools/deps.sh first on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${1:-build}
shift || true

if [[ -f "$dir/meson-private/coredata.dat" ]]; then
	meson setup --reconfigure "$dir" "$@"
else
	meson setup "$dir" "$@"
fi
meson compile -C "$dir"
