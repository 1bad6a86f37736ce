#!/usr/bin/env bash
# The whole-mount benchmark (../shared/bench/fsbench.sh) on a vault in a
# directory and on a cluster vault (one etcd and one SeaweedFS S3 gateway on
# loopback, tests/cluster/servers.sh), alternating in one run, so that the two
# can be compared (docs/PERFORMANCE.md, "Cluster vaults"). Run as root after
# `cargo build --release`:
#
#   tests/benches/cluster-vs-embedded.sh [ROUNDS]     (default 1)
#
# env: BENCH=/tmp/bench-cluster (stores, servers, mount points)
#      OUT=/tmp/vaultfs-cluster-bench (CSV, log, summary)
#      SHARED_BENCH=../shared/bench   FSBENCH_* as fsbench.sh takes them
#      KINDS="embedded cluster reader" (the default) or any of them, in order
#      (the defaults write 512 MiB sequentially and 128 MiB at random).
# Each mount is remounted before the cold read, as run_peers.sh does. The
# servers are started afresh for every cluster run, so every run starts empty.
# A third kind, "reader", is the cluster vault with a read-only mount beside
# the holder (docs/CLUSTER.md) while fsbench runs on the holder: its rows
# are what close-to-open costs the holder (a commit at every close after
# changes). Then the files fsbench left are read through the read-only mount:
# seq_read_on_reader (the 512 MiB file, cat), seq_read_again_on_reader (the
# same cat once more) and cp_out_on_reader (cp -a of its mixed tree).
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
PEER=$ROOT/tests/benches/vaultfs-peer.sh
SELF=$ROOT/tests/benches/cluster-vs-embedded.sh
SERVERS=$ROOT/tests/cluster/servers.sh
BENCH=${BENCH:-/tmp/bench-cluster}
OUT=${OUT:-/tmp/vaultfs-cluster-bench}
ROUNDS=${1:-1}

log() { echo "[cluster-vs-embedded $(date +%T)] $*" >&2; }

# The vault address of KIND (embedded|cluster|reader) for this run; sets up its store.
setup() {
  local kind=$1 dir=$BENCH/$1
  rm -rf "$dir"
  mkdir -p "$dir/mnt"
  printf 'benchpw-not-secret\n' >"$dir/passfile"
  if [ "$kind" = embedded ]; then
    "$PEER" init "$dir/store" --passphrase-file "$dir/passfile" >/dev/null || return 1
    echo "$dir/store" >"$dir/address"
  else
    local addrs etcd s3
    addrs=$("$SERVERS" start "$dir/servers") || return 1
    etcd=$(sed -n 1p <<<"$addrs")
    s3=$(sed -n 2p <<<"$addrs")
    # The state directory (pid file, control socket) beside the servers.
    VAULTFS_STATE_DIR=$dir/state "$PEER" init "$etcd/bench" --data "$s3" --passphrase-file "$dir/passfile" >/dev/null \
      || return 1
    echo "$etcd/bench" >"$dir/address"
  fi
}

# The read-only mount of KIND reader, at $BENCH/reader/mnt-ro.
# Through the same wrapper as the holder, so its 1-working is mnt-ro.
mount_reader() {
  local dir=$BENCH/reader
  mkdir -p "$dir/mnt-ro"
  VAULTFS_STATE_DIR=$dir/state-ro VAULTFS_HOST=bench-ro nohup "$PEER" mount -f -o ro --passphrase-file "$dir/passfile" \
    "$(cat "$dir/address")" "$dir/mnt-ro" >>"$dir/reader.log" 2>&1 </dev/null &
  echo $! >"$dir/reader.pid"
  wait_mounted "reader (read-only)" "$dir/mnt-ro" "$dir/reader.pid" "$dir/reader.log"
}

# Waits up to 60 s for the mount WHAT at MNT by the process in PIDFILE (its log: LOG).
wait_mounted() {
  local what=$1 mnt=$2 pidfile=$3 logfile=$4
  for _ in $(seq 1 600); do
    mountpoint -q "$mnt" && return 0
    kill -0 "$(cat "$pidfile")" 2>/dev/null || { log "$what: the mount exited"; tail -5 "$logfile" >&2; return 1; }
    sleep 0.1
  done
  log "$what: no mount after 60 s"
  return 1
}

mount_kind() {
  local dir=$BENCH/$1
  VAULTFS_STATE_DIR=$dir/state nohup "$PEER" mount -f --passphrase-file "$dir/passfile" "$(cat "$dir/address")" \
    "$dir/mnt" >>"$dir/daemon.log" 2>&1 </dev/null &
  echo $! >"$dir/peer.pid"
  wait_mounted "$1" "$dir/mnt" "$dir/peer.pid" "$dir/daemon.log"
}

umount_kind() {
  local dir=$BENCH/$1 pid
  if mountpoint -q "$dir/mnt-ro" 2>/dev/null; then
    umount "$dir/mnt-ro"
    pid=$(cat "$dir/reader.pid" 2>/dev/null) && for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  mountpoint -q "$dir/mnt" && umount "$dir/mnt"
  pid=$(cat "$dir/peer.pid" 2>/dev/null) || return 0
  for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$dir/peer.pid"
}

cleanup() {
  local kind
  for kind in embedded cluster reader; do
    umount_kind "$kind" 2>/dev/null
    [ -d "$BENCH/$kind/servers" ] && "$SERVERS" stop "$BENCH/$kind/servers"
  done
}

case ${1:-} in
__remount)
  umount_kind "$2" && mount_kind "$2" || exit 1
  [ "$2" != reader ] || mount_reader
  exit $?
  ;;
esac

# What fsbench left on the holder, read through the read-only mount:
# "label,metric,value,unit,EXTRA" rows to the CSV.
read_on_reader() {
  local ro=$BENCH/reader/mnt-ro w a b bytes dst=$BENCH/reader/cp-dst
  w=$(ls -d "$ro"/fsbench.* 2>/dev/null | head -1)
  [ -n "$w" ] || { log "reader: nothing of fsbench's to read"; return 0; }
  bytes=$(stat -c %s "$w/seq.bin")
  a=$EPOCHREALTIME; cat "$w/seq.bin" >/dev/null; b=$EPOCHREALTIME
  echo "vaultfs-reader,seq_read_on_reader,$(awk -v n="$bytes" -v a="$a" -v b="$b" 'BEGIN{printf "%.1f", n/1e6/(b-a)}'),MB/s,$1" >>"$csv"
  # Again, unchanged since: what the reader's page cache keeps across opens.
  a=$EPOCHREALTIME; cat "$w/seq.bin" >/dev/null; b=$EPOCHREALTIME
  echo "vaultfs-reader,seq_read_again_on_reader,$(awk -v n="$bytes" -v a="$a" -v b="$b" 'BEGIN{printf "%.1f", n/1e6/(b-a)}'),MB/s,$1" >>"$csv"
  bytes=$(find "$w/cptree" -type f -printf '%s\n' | awk '{s+=$1} END{print s+0}')
  rm -rf "$dst"; mkdir -p "$dst"
  a=$EPOCHREALTIME; cp -a "$w/cptree" "$dst/"; b=$EPOCHREALTIME
  echo "vaultfs-reader,cp_out_on_reader,$(awk -v n="$bytes" -v a="$a" -v b="$b" 'BEGIN{printf "%.1f", n/1e6/(b-a)}'),MB/s,$1" >>"$csv"
  rm -rf "$dst"
  tail -3 "$csv"
}

mkdir -p "$OUT"
stamp=$(date +%Y%m%d-%H%M%S)
csv=$OUT/fsbench-$stamp.csv
logf=$OUT/fsbench-$stamp.log
echo "label,metric,value,unit,round,order,load1_before,busy_pct_before,start_time" >"$csv"
echo "# $(date -Is) $(uname -r) vaultfs: $("$PEER" --version 2>&1 | head -1) etcd: $(etcd --version 2>&1 | head -1)" >>"$logf"
trap cleanup EXIT
for r in $(seq 1 "$ROUNDS"); do
  kinds=(embedded cluster reader)
  [ $((r % 2)) = 0 ] && kinds=(reader cluster embedded)
  # KINDS="cluster reader" runs only those, in that order.
  [ -n "${KINDS:-}" ] && read -ra kinds <<<"$KINDS"
  for k in "${!kinds[@]}"; do
    kind=${kinds[$k]}
    log "round $r/$ROUNDS: $kind (load $(cut -d' ' -f1-3 /proc/loadavg))"
    if ! setup "$kind" || ! mount_kind "$kind" || { [ "$kind" = reader ] && ! mount_reader; }; then
      log "$kind: set-up failed"
      cleanup
      continue
    fi
    load=$(cut -d' ' -f1 /proc/loadavg)
    echo "# round $r $kind start $(date -Is) load1=$load :: $(cat /proc/loadavg)" >>"$logf"
    FSBENCH_KEEP=1 FSBENCH_REMOUNT="bash '$SELF' __remount $kind" FSBENCH_CSV_EXTRA="$r,$k,$load,,$(date -Is)" \
      bash "$SHARED/fsbench.sh" "$BENCH/$kind/mnt" "vaultfs-$kind" "$csv" 2>>"$logf" | tee -a "$logf"
    [ "$kind" = reader ] && read_on_reader "$r,$k,$load,,$(date -Is)" | tee -a "$logf"
    cleanup
  done
done
python3 "$SHARED/summarize.py" "$csv" | tee "$OUT/fsbench-$stamp.summary.md"
echo "CSV: $csv"
