#!/usr/bin/env bash
# How soon an open waiting for approval on one host proceeds once it is
# approved on another (docs/PERFORMANCE.md, "Approvals across hosts"): a
# cluster vault (one etcd and one SeaweedFS on loopback,
# tests/cluster/servers.sh), its holder and a read-only mount beside it;
# each sample is a `cat` of a level-3 file on the reader, listed by
# `vaultfs pending` on the holder and approved there. Run as root after
# `cargo build --release`:
#
#   tests/benches/approvals.sh [SAMPLES]      (default 10)
#
# env: BENCH=/tmp/bench-approvals (servers, state, mount points);
# ETCD_PORT / S3_PORT (default 23795 / 28340).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VAULTFS=${VAULTFS_BIN:-$ROOT/target/release/vaultfs}
BENCH=${BENCH:-/tmp/bench-approvals}
N=${1:-10}
export ETCD_PORT=${ETCD_PORT:-23795} S3_PORT=${S3_PORT:-28340}

cleanup() {
  for m in "$BENCH/mnt-b" "$BENCH/mnt-a"; do
    mountpoint -q "$m" 2>/dev/null && { umount "$m" 2>/dev/null || umount -l "$m"; }
  done
  # The daemons' last commits need etcd: give them a moment first.
  sleep 2
  "$ROOT/tests/cluster/servers.sh" stop "$BENCH/servers" >/dev/null 2>&1
}
trap cleanup EXIT
rm -rf "$BENCH" && mkdir -p "$BENCH"/{a,b,mnt-a,mnt-b}
"$ROOT/tests/cluster/servers.sh" start "$BENCH/servers" >/dev/null
address=etcd://127.0.0.1:$ETCD_PORT/approvals$$
printf 'approvals-bench-not-secret\n' > "$BENCH/pass"
on() { local host=$1; shift; VAULTFS_STATE_DIR=$BENCH/$host VAULTFS_HOST=host-$host "$VAULTFS" "$@"; }
on a init "$address" --data "s3+http://127.0.0.1:$S3_PORT/vault-data" \
  --passphrase-file "$BENCH/pass" --kdf-memory 8 --kdf-passes 1 >/dev/null 2>&1
on a mount "$address" "$BENCH/mnt-a" --passphrase-file "$BENCH/pass" 2>/dev/null
echo terms > "$BENCH/mnt-a/3-sealed/f"
on b mount "$address" "$BENCH/mnt-b" --passphrase-file "$BENCH/pass" -o ro 2>/dev/null
sleep 1.5
now() { date +%s.%N; }
for i in $(seq 1 "$N"); do
  ( cat "$BENCH/mnt-b/3-sealed/f" >/dev/null; now > "$BENCH/done" ) &
  id=
  for _ in $(seq 1 200); do
    id=$(on a pending "$BENCH/mnt-a" --json | python3 -c \
      'import json,sys; l=[p for p in json.load(sys.stdin) if p.get("host")=="host-b"]; print("host-b:%d" % l[0]["id"] if l else "")')
    [ -n "$id" ] && break
    sleep 0.05
  done
  t0=$(now)
  on a approve "$BENCH/mnt-a" "$id" >/dev/null
  t1=$(now)
  wait
  python3 -c "print('sample $i: approve %.1f ms; the open proceeded %.1f ms after the approve began' % (($t1-$t0)*1000, (float(open('$BENCH/done').read())-$t0)*1000))"
done
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
