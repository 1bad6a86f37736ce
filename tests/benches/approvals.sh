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

source "$ROOT/tests/benches/two-hosts.sh"
holder_up approvals
echo terms > "$BENCH/mnt-a/3-sealed/f"
reader_up
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
