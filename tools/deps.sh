#!/usr/bin/env bash
# Install what building and testing popfetchd needs on Debian 12.
#
#   bash tools/deps.sh          # the build's and the tests' packages
#   bash tools/deps.sh --demo   # only the build's and the demo's
#
# Idempotent and quiet: asks dpkg which packages are missing and runs apt
# only if some are. Must run as root (or with sudo available) when
# something is missing. Debian's Dovecot package would start the system's
# Dovecot on install; a temporary policy-rc.d stops that: the tests start
# their own servers on high ports.
#
# Cyrus's and Courier's pop3d packages conflict with Dovecot's: their
# dependencies are installed normally, the two pop3d packages are fetched
# and unpacked under /opt/popfetchd-test, where tests/cyrus.py and
# tests/courier.py run them from.
set -euo pipefail

# The build, and the demo's throwaway Dovecot.
packages=(
	build-essential meson ninja-build pkg-config
	libevent-dev libssl-dev libconfig-dev libgsasl-dev libjson-c-dev check
	dovecot-core dovecot-pop3d python3 openssl ca-certificates
)
# The tests': the other servers, the fuzzer's runtime, systemd's tools,
# what they watch popfetchd with (strace, ps, ss),
# the peers the migration is tested against.
test_packages=(
	dovecot-lmtpd dovecot-sieve
	cyrus-common sasl2-bin courier-base courier-authdaemon courier-authlib-userdb
	clang libclang-rt-14-dev
	systemd groff-base strace procps iproute2
	debootstrap systemd-container
	mpop fetchmail getmail6
)
unpack_root=/opt/popfetchd-test
unpack_packages=(cyrus-pop3d courier-pop)
if [[ "${1:-}" == --demo ]]; then
	test_packages=()
	unpack_packages=()
fi
packages+=("${test_packages[@]}")

# The tests reach their servers as "localhost" too (certificate names);
# a minimal system may have no /etc/hosts to resolve it.
if [[ "${1:-}" != --demo ]] && ! getent hosts localhost >/dev/null; then
	echo "deps.sh: adding localhost to /etc/hosts"
	printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n' |
		{ if [[ $(id -u) -eq 0 ]]; then tee -a /etc/hosts; else sudo tee -a /etc/hosts; fi; } >/dev/null
fi

missing=()
for pkg in "${packages[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null ||
		true)
	if [[ "$status" != installed ]]; then
		missing+=("$pkg")
	fi
done

unpack=()
for pkg in "${unpack_packages[@]}"; do
	if [[ ! -d "$unpack_root/$pkg" ]]; then
		unpack+=("$pkg")
	fi
done

if [[ ${#missing[@]} -eq 0 && ${#unpack[@]} -eq 0 ]]; then
	exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
	if ! command -v sudo >/dev/null; then
		echo "deps.sh: missing ${missing[*]}; run as root to install" >&2
		exit 1
	fi
	sudo=(sudo)
fi

echo "deps.sh: installing ${#missing[@]} packages$([[ ${#unpack[@]} -eq 0 ]] || echo " and unpacking ${unpack[*]}") (a minute or two)"

log=$(mktemp)
policy=/usr/sbin/policy-rc.d
made_policy=false
ticker=
cleanup() {
	if $made_policy; then
		"${sudo[@]}" rm -f "$policy"
	fi
	if [[ -n "$ticker" ]]; then
		kill "$ticker" 2>/dev/null || true
	fi
	rm -f "$log"
}
trap cleanup EXIT

# apt is quiet; a line every 15 s says it is still at work.
(
	start=$SECONDS
	nap=
	trap 'kill $nap 2>/dev/null; exit 0' TERM
	while :; do
		sleep 15 &
		nap=$!
		wait $nap
		echo "deps.sh: still installing ($((SECONDS - start)) s)"
	done
) &
ticker=$!

# invoke-rc.d asks policy-rc.d whether a package may start its service;
# 101 means "no". Only ours is removed afterwards.
if [[ ! -e "$policy" ]]; then
	printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
	"${sudo[@]}" chmod 755 "$policy"
	made_policy=true
fi

run_apt() {
	if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive "$@" >>"$log" 2>&1; then
		echo "deps.sh: failed: $*" >&2
		cat "$log" >&2
		exit 1
	fi
}

run_apt apt-get update -qq
if [[ ${#missing[@]} -gt 0 ]]; then
	run_apt apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if [[ ${#unpack[@]} -gt 0 ]]; then
	debs=$(mktemp -d)
	(cd "$debs" && run_apt apt-get download "${unpack[@]}")
	for pkg in "${unpack[@]}"; do
		"${sudo[@]}" mkdir -p "$unpack_root"
		"${sudo[@]}" dpkg-deb -x "$debs/${pkg}"_*.deb "$unpack_root/$pkg.tmp"
		"${sudo[@]}" mv "$unpack_root/$pkg.tmp" "$unpack_root/$pkg"
	done
	rm -rf "$debs"
fi
