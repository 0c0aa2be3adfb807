#!/usr/bin/env bash
# The whole test suite: install what is missing, build twice (plain, and
# with AddressSanitizer + UndefinedBehaviorSanitizer), run every test in
# both builds, and end with one line "N passed, N failed".
#
#   bash tools/test.sh
#
# Exits non-zero if a build or any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/deps.sh

# Any sanitizer finding ends the process with an error, so the test fails.
export ASAN_OPTIONS=halt_on_error=1:abort_on_error=1:detect_leaks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:abort_on_error=1

passed=0
failed=0
skipped=0
status=0

# Count the results of the last "meson test" in build directory $1 from
# its machine-readable log: one JSON object per test.
count_results() {
	local counts
	counts=$(python3 - "$1/meson-logs/testlog.json" <<'EOF'
import json
import re
import sys

ok = bad = skip = 0
try:
    with open(sys.argv[1]) as f:
        for line in f:
            if not line.strip():
                continue
            entry = json.loads(line)
            result = entry.get("result", "")
            # A Python test file passes as a whole when some of its
            # tests skipped: unittest's closing line says how many, and
            # they count as skipped here, never as silent passes.
            m = re.search(r"^(?:OK|FAILED) \(.*?skipped=(\d+)",
                          entry.get("stderr") or "", re.M)
            if m:
                skip += int(m.group(1))
            if result in ("OK", "EXPECTEDFAIL"):
                ok += 1
            elif result == "SKIP":
                skip += 1
            else:  # FAIL, TIMEOUT, UNEXPECTEDPASS, ERROR
                bad += 1
except FileNotFoundError:
    pass
print(ok, bad, skip)
EOF
	)
	local ok bad skip
	read -r ok bad skip <<<"$counts"
	passed=$((passed + ok))
	failed=$((failed + bad))
	skipped=$((skipped + skip))
}

# Build in $1 with the meson options that follow, then run its tests.
build_and_test() {
	local dir=$1
	shift
	echo "=== $dir: build"
	if ! bash tools/build.sh "$dir" "$@"; then
		echo "=== $dir: BUILD FAILED"
		failed=$((failed + 1))
		status=1
		return
	fi
	echo "=== $dir: test"
	rm -f "$dir/meson-logs/testlog.json"
	if ! env $TEST_ENV meson test -C "$dir" --print-errorlogs; then
		status=1
	fi
	count_results "$dir"
}

# Test builds carry the crash points of the crash test (-Dtest_hooks);
# the demo's build/ does not.
TEST_ENV= build_and_test build-test -Dtest_hooks=true
# Check runs each case in a child of its own, whose leaks LeakSanitizer
# does not report: the sanitizer build runs the cases in one process.
TEST_ENV=CK_FORK=no build_and_test build-san -Dtest_hooks=true \
	-Db_sanitize=address,undefined -Db_lundef=false

# A short run of the POP3 engine's fuzzer (clang's libFuzzer, with ASan
# and UBSan) from the seed corpus; the long runs are done by hand.
fuzz_short() {
	local dir=build-fuzz corpus
	echo "=== $dir: build"
	local setup_log
	# Quiet when it works; the reason when it does not.
	setup_log=$(mktemp)
	if [[ ! -f "$dir/meson-private/coredata.dat" ]] &&
		! CC=clang meson setup "$dir" -Dfuzz=true \
			-Db_sanitize=address,undefined -Db_lundef=false \
			>"$setup_log" 2>&1; then
		echo "=== $dir: SETUP FAILED"
		tail -n 40 "$setup_log"
		rm -f "$setup_log"
		failed=$((failed + 1))
		return
	fi
	rm -f "$setup_log"
	if ! meson compile -C "$dir" fuzz_pop3 >"$dir/build.log" 2>&1; then
		echo "=== $dir: BUILD FAILED"
		tail -n 40 "$dir/build.log"
		failed=$((failed + 1))
		return
	fi
	corpus=$(mktemp -d)
	cp fuzz/corpus/* "$corpus"/
	if "$dir/fuzz_pop3" -max_total_time=30 -print_final_stats=1 \
		"$corpus" >"$dir/fuzz.log" 2>&1; then
		echo "fuzz_pop3: OK ($(grep -o 'stat::number_of_executed_units: *[0-9]*' \
			"$dir/fuzz.log" | grep -o '[0-9]*$') runs in 30 s)"
		passed=$((passed + 1))
	else
		echo "fuzz_pop3: FAILED"
		tail -n 60 "$dir/fuzz.log"
		failed=$((failed + 1))
	fi
	rm -rf "$corpus"
}
fuzz_short

if [[ $failed -ne 0 ]]; then
	status=1
fi
if [[ $skipped -ne 0 ]]; then
	echo "$passed passed, $failed failed, $skipped skipped"
else
	echo "$passed passed, $failed failed"
fi
exit "$status"
