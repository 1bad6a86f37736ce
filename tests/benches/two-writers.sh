#!/usr/bin/env bash
# Two hosts writing one cluster vault at once (`-o shared`, docs/CLUSTER.md
# "Several hosts writing") beside one host writing alone, in one run, with
# one etcd and one SeaweedFS on loopback (tests/cluster/servers.sh). Run as
# root after `cargo build --release`:
#
#   tests/benches/two-writers.sh
#
# env: FILES (default 1000) small files of 4 KiB each host writes and
#      closes; SEQ_MIB (default 256) MiB each host writes to one file and
#      fsyncs; BENCH=/tmp/bench-two-writers; ETCD_PORT, S3_PORT.
# Rows, each a fresh directory of the same vault, one after another:
#   holder    the vault mounted without -o shared (one writer, the default)
#   holder+ro the same, with a read-only mount on host b (each close on the
#             holder then commits, as every close on a shared mount does)
#   shared-1  one -o shared mount writing, a second one mounted and idle
#   shared-2  two -o shared mounts (hosts a and b) writing at once
# For shared-2 the rates are the two hosts' together.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VAULTFS=${VAULTFS:-$ROOT/target/release/vaultfs}
BENCH=${BENCH:-/tmp/bench-two-writers}
FILES=${FILES:-1000}
SEQ_MIB=${SEQ_MIB:-256}
export ETCD_PORT=${ETCD_PORT:-23790} S3_PORT=${S3_PORT:-28333}
# shellcheck source=two-hosts.sh
. "$ROOT/tests/benches/two-hosts.sh"

now() { date +%s.%N; }
load() { cut -d' ' -f1 /proc/loadavg; }

# Writes FILES files of 4 KiB under DIR, each closed (printf is a builtin:
# no process per file).
creates() {
  mkdir -p "$1"
  local i
  for ((i = 0; i < FILES; i++)); do printf '%4096d' "$i" >"$1/f$i"; done
}

seq_write() { dd if=/dev/zero of="$1" bs=1M count="$SEQ_MIB" conv=fsync status=none; }

mount_on() { on "$1" mount "$address" "$BENCH/mnt-$1" --passphrase-file "$BENCH/pass" "${@:2}" 2>/dev/null; }
unmount_on() { on "$1" umount "$BENCH/mnt-$1" >/dev/null; }

# ROW WORKLOAD DIR...: runs WORKLOAD on every DIR at once; prints the rate.
row() {
  local name=$1 what=$2
  shift 2
  local l0 t0 t1 pids=() d i=0 each=""
  l0=$(load)
  t0=$(now)
  for d in "$@"; do
    # Each host's own end: how evenly the hosts took turns.
    if [ "$what" = creates ]; then
      (creates "$d"; now >"$BENCH/end.$i") &
    else
      (seq_write "$d"; now >"$BENCH/end.$i") &
    fi
    pids+=($!)
    i=$((i + 1))
  done
  wait "${pids[@]}"
  t1=$(now)
  local n=$#
  if [ "$n" -gt 1 ]; then
    for ((i = 0; i < n; i++)); do
      each="$each $(awk -v a="$t0" -v b="$(cat "$BENCH/end.$i")" 'BEGIN { printf "%.2f", b-a }')"
    done
    each=", each host done after${each} s"
  fi
  if [ "$what" = creates ]; then
    awk -v n="$n" -v f="$FILES" -v a="$t0" -v b="$t1" -v r="$name" -v l="$l0" \
      -v e="$each" 'BEGIN { printf "%-9s creates    %7.0f files/s  (%d x %d files, %.2f s, load1 %s%s)\n", r, n*f/(b-a), n, f, b-a, l, e }'
  else
    awk -v n="$n" -v m="$SEQ_MIB" -v a="$t0" -v b="$t1" -v r="$name" -v l="$l0" \
      -v e="$each" 'BEGIN { printf "%-9s seq_write  %7.1f MB/s     (%d x %d MiB, %.2f s, load1 %s%s)\n", r, n*m*1.048576/(b-a), n, m, b-a, l, e }'
  fi
}

holder_up bench
echo "two-writers: FILES=$FILES SEQ_MIB=$SEQ_MIB, $(nproc) cores, $(date -u +%FT%TZ)"
row holder creates "$BENCH/mnt-a/1-working/holder"
row holder seq "$BENCH/mnt-a/1-working/holder.seq"
reader_up
row holder+ro creates "$BENCH/mnt-a/1-working/holder-ro"
unmount_on b
unmount_on a
mount_on a -o shared
mount_on b -o shared
row shared-1 creates "$BENCH/mnt-a/1-working/one"
row shared-1 seq "$BENCH/mnt-a/1-working/one.seq"
row shared-2 creates "$BENCH/mnt-a/1-working/two-a" "$BENCH/mnt-b/1-working/two-b"
row shared-2 seq "$BENCH/mnt-a/1-working/two-a.seq" "$BENCH/mnt-b/1-working/two-b.seq"
unmount_on b
unmount_on a
