#!/usr/bin/env bash
# What a read-only mount's walks of paths cost (docs/PERFORMANCE.md,
# "Names on a reader"): a cluster vault (one etcd and one SeaweedFS on
# loopback, tests/cluster/servers.sh), its holder making 1,000 files of
# 1-8 KB in 1-working/tree/dNN/ (10 directories of 100), and a read-only
# mount beside it; on the reader, each command twice, timed, with the etcd
# reads it made (etcd's own grpc_server_handled_total for Range). Run as
# root after `cargo build --release`:
#
#   tests/benches/reader-names.sh
#
# env: VAULTFS_BIN (default target/release/vaultfs); BENCH=/tmp/bench-names
# (servers, state, mount points); ETCD_PORT / S3_PORT (default 23797 / 28342).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VAULTFS=${VAULTFS_BIN:-$ROOT/target/release/vaultfs}
BENCH=${BENCH:-/tmp/bench-names}
export ETCD_PORT=${ETCD_PORT:-23797} S3_PORT=${S3_PORT:-28342}

source "$ROOT/tests/benches/two-hosts.sh"
holder_up names
mkdir -p "$BENCH/copy"
python3 - "$BENCH/mnt-a/1-working/tree" <<'PY'
import os, random, sys
random.seed(7)
for d in range(10):
    os.makedirs(f"{sys.argv[1]}/d{d:02}")
    for i in range(100):
        with open(f"{sys.argv[1]}/d{d:02}/f{i:03}", "wb") as f:
            f.write(random.randbytes(random.randint(1024, 8192)))
PY
sync -f "$BENCH/mnt-a"
reader_up
ranges() {
  curl -s "http://127.0.0.1:$ETCD_PORT/metrics" |
    awk '/^grpc_server_handled_total/ && /grpc_method="Range"/ { n += $2 } END { printf "%d", n }'
}
(cd "$BENCH/mnt-a" && find 1-working/tree -type f | sort) > "$BENCH/files"
run() {
  local what=$1; shift
  for pass in 1 2; do
    local r0 t0 t1 r1
    r0=$(ranges); t0=$(date +%s%N)
    "$@" >/dev/null
    t1=$(date +%s%N); r1=$(ranges)
    echo "$what (pass $pass): $(( (t1 - t0) / 1000000 )) ms, $(( r1 - r0 )) etcd reads"
  done
}
cd "$BENCH/mnt-b"
run "stat of the 1,000 files" xargs -a "$BENCH/files" stat -c %s
run "cat of the 1,000 files" xargs -a "$BENCH/files" cat
run "find -type f of the tree" find 1-working/tree -type f
run "ls -lR of the tree" ls -lR 1-working/tree
run "cp -a of the tree" bash -c "rm -rf '$BENCH/copy/tree' && cp -a 1-working/tree '$BENCH/copy/'"
cd /
echo "binary: $VAULTFS ($("$VAULTFS" --version 2>/dev/null | head -1))"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
