#!/usr/bin/env bash
# Resident memory of `mta-sts daemon` after 3,000 first lookups, the daemon and the world alone
# (no postfix-mta-sts-resolver, no floor): a quicker probe than side-by-side.sh for memory work.
#
#   sudo benches/rss-probe.sh [WRAPPER...]      # e.g. `env MALLOC_ARENA_MAX=1`, `heaptrack -o F`
#
# Settings (environment): OURS (the mta-sts binary; default the release build), C (lookups at
# once, 64), PERF (1: also 3 s cached runs at 64x16, 64x1 and 1x1), GDB (1: glibc's
# malloc_stats() and malloc_trim(0) through gdb, printed to the daemon's log), SIG (INT; KILL
# keeps heaptrack's view of what is still allocated), OUT (a new directory under /tmp).
# Build first: cargo build --release -p mta-sts-cli --bin mta-sts
#              cargo build --release -p mta-sts-testkit --example serve
#              cargo build --release -p mta-sts-benches --bin socketmap-load
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
T="${CARGO_TARGET_DIR:-$repo/target}/release"
OURS="${OURS:-$T/mta-sts}"
if [ "${RSS_PROBE_INSIDE:-0}" != 1 ]; then
    [ "$(id -u)" = 0 ] || { echo "rss-probe: run as root (unshare, port 53, a bind mount)" >&2; exit 1; }
    OUT="${OUT:-$(mktemp -d /tmp/rss-probe.XXXXXX)}"
    export OUT OURS
    exec unshare --net --mount --propagation private env RSS_PROBE_INSIDE=1 "$0" "$@"
fi
ip link set lo up
printf 'nameserver 127.0.0.1\n' >"$OUT/resolv.conf"
mount --bind "$OUT/resolv.conf" /etc/resolv.conf
"$T/examples/serve" --domains 4000 --ca-file "$OUT/ca.pem" >"$OUT/world.out" 2>&1 &
W=$!
for _ in $(seq 600); do grep -q '^ready ' "$OUT/world.out" && break; sleep 0.1; done
# The configuration side-by-side.sh gives both daemons.
sed 's/^port: PORT$/port: 8462/' "$repo/benches/side-by-side.yml" >"$OUT/ours.yml"
"$@" "$OURS" daemon --config "$OUT/ours.yml" --ca-file "$OUT/ca.pem" -v warn >"$OUT/ours.log" 2>&1 &
D=$!
load() { "$T/socketmap-load" --addr 127.0.0.1:8462 "$@"; }
for _ in $(seq 300); do
    load --key 192.0.2.1 --requests 1 --seconds 5 --expect 'NOTFOUND ' >/dev/null 2>&1 && break
    sleep 0.2
done
# The daemon itself, not a wrapper that names it on its command line.
P=$(pgrep -n -f "^$OURS daemon --config $OUT/ours.yml" || echo "$D")
status() { grep -E 'VmRSS|RssAnon|RssFile' "/proc/$P/status" | tr -s ' \t\n' ' '; echo "($1)"; }
status idle
load --connections "${C:-64}" --depth 1 --requests 3000 --bulk 1000:3000 --seconds 600 \
    --expect 'OK secure match=mx.{key} servername=hostname' 2>&1 | head -1
status "after 3,000 first lookups, ${C:-64} at once"
# The largest mappings by resident size.
awk '/^[0-9a-f]+-[0-9a-f]+ / { name = $6; perm = $2 } /^Rss:/ && $2 > 0 { print $2 " KiB " perm " " name }' \
    "/proc/$P/smaps" | sort -rn | head -8
if [ "${GDB:-0}" = 1 ]; then
    gdb -p "$P" -batch -ex 'call (void)malloc_stats()' -ex 'call (int)malloc_trim(0)' >/dev/null 2>&1
    status "after malloc_trim(0)"
    grep -E 'Arena|system bytes|in use bytes' "$OUT/ours.log" | tail -12
fi
if [ "${PERF:-0}" = 1 ]; then
    for cd in "64 16" "64 1" "1 1"; do
        set -- $cd
        load --connections "$1" --depth "$2" --requests 100000000 --bulk 1000:3000 --seconds 3 \
            --expect 'OK secure match=mx.{key} servername=hostname' 2>&1 | head -1
    done
fi
kill "-${SIG:-INT}" "$P" 2>/dev/null || true
sleep 1
kill -9 "$P" "$D" "$W" 2>/dev/null || true
wait 2>/dev/null || true
echo "rss-probe: files in $OUT" >&2
