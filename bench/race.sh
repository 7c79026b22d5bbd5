#!/usr/bin/env bash
# Races certd against lego and certbot (Debian's packages) on one Pebble
# and one DNS-01 path (Knot over RFC 2136), 1, 10 and 50 certificates
# each, and prints wall time, CPU time and peak RSS. A fresh Pebble serves
# every run, at full speed (PEBBLE_VA_NOSLEEP=1, PEBBLE_WFE_NONCEREJECT=0,
# PEBBLE_AUTHZREUSE=0). Loopback only.
#
#   bench/race.sh                      # everything
#   CERTD_RACE_N=1,10 CERTD_RACE_TOOLS=certd,lego bench/race.sh
#   CERTD_RACE_OUT=bench/results.txt bench/race.sh   # keep the table
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
export DEBIAN_FRONTEND=noninteractive

need=()
for p in pebble knot lego certbot python3-certbot-dns-rfc2136; do
	dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

CERTD_RACE=1 go test ./bench -run '^TestRace$' -count=1 -v -timeout 60m | grep -v '^=== \|^--- \|^PASS\|^ok '
