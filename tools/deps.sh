#!/usr/bin/env bash
# Install what building and testing popfetchd needs on Debian 12.
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

packages=(
	build-essential meson ninja-build pkg-config
	libevent-dev libssl-dev libconfig-dev libgsasl-dev libjson-c-dev check
	dovecot-core dovecot-pop3d dovecot-lmtpd dovecot-sieve
	cyrus-common sasl2-bin courier-base courier-authdaemon courier-authlib-userdb
	python3 openssl clang libclang-rt-14-dev ca-certificates
	systemd groff-base strace procps
	debootstrap systemd-container
	mpop fetchmail getmail6
)

missing=()
for pkg in "${packages[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null ||
		true)
	if [[ "$status" != installed ]]; then
		missing+=("$pkg")
	fi
done

unpack_root=/opt/popfetchd-test
unpack=()
for pkg in cyrus-pop3d courier-pop; do
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

echo "deps.sh: installing ${missing[*]} ${unpack[*]}"

log=$(mktemp)
policy=/usr/sbin/policy-rc.d
made_policy=false
cleanup() {
	if $made_policy; then
		"${sudo[@]}" rm -f "$policy"
	fi
	rm -f "$log"
}
trap cleanup EXIT

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
