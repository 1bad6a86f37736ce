#!/usr/bin/env bash
# What file locks cost (docs/PERFORMANCE.md, "Locks across hosts"): on a vault
# in a directory (the kernel keeps its locks) and on a cluster vault (one etcd
# and one SeaweedFS on loopback, tests/cluster/servers.sh) through its holder,
# alone (its locks kept to itself) and with a read-only mount beside it
# (every lock published in etcd), and through that read-only mount.
# Run as root after `cargo build --release`:
#
#   tests/benches/locks.sh [SECONDS]      (default 5 per row)
#
# env: BENCH=/tmp/bench-locks (stores, servers, mount points)
# Rows: fcntl lock+unlock pairs of one byte a second (F_SETLKW write lock on
# the holder, read lock on the reader), flock -x/-u pairs a second, and
# sqlite transactions a second (BEGIN IMMEDIATE, two updates, COMMIT, on a
# rollback journal) on the writer; on the reader, sqlite read transactions
# a second while nothing writes.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VAULTFS=${VAULTFS_BIN:-$ROOT/target/release/vaultfs}
SERVERS=$ROOT/tests/cluster/servers.sh
BENCH=${BENCH:-/tmp/bench-locks}
SECS=${1:-5}

log() { echo "[locks $(date +%T)] $*" >&2; }

cleanup() {
  for m in "$BENCH"/*/mnt "$BENCH"/cluster/mnt-ro; do
    mountpoint -q "$m" 2>/dev/null && { umount "$m" 2>/dev/null || umount -l "$m"; }
  done
  "$SERVERS" stop "$BENCH/servers" >/dev/null 2>&1
}
trap cleanup EXIT

# mount STATE ADDRESS MNT [OPTIONS]: a daemon in the background, waited for.
mount() {
  local state=$1 address=$2 mnt=$3 opts=${4:-}
  mkdir -p "$mnt"
  VAULTFS_STATE_DIR=$state VAULTFS_HOST=bench-ro nohup "$VAULTFS" mount -f ${opts:+-o $opts} \
    --passphrase-file "$BENCH/passfile" "$address" "$mnt" >>"$state.log" 2>&1 </dev/null &
  for _ in $(seq 1 600); do mountpoint -q "$mnt" && return 0; sleep 0.1; done
  log "no mount at $mnt"; tail -5 "$state.log" >&2; exit 1
}

# probe KIND FILE: one row of rates for FILE (a path on the mount).
probe() {
  python3 - "$1" "$2" "$SECS" <<'PY'
import fcntl, os, sqlite3, sys, time
kind, path, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
reader = kind == "cluster-reader"
def rate(step):
    n, t0 = 0, time.time()
    while time.time() - t0 < secs:
        step(); n += 1
    return n / (time.time() - t0)
fd = os.open(path, os.O_RDONLY if reader else os.O_RDWR)
lk = fcntl.LOCK_SH if reader else fcntl.LOCK_EX
fcntl_rate = rate(lambda: (fcntl.lockf(fd, lk, 1, 0), fcntl.lockf(fd, fcntl.LOCK_UN, 1, 0)))
flock_rate = rate(lambda: (fcntl.flock(fd, lk), fcntl.flock(fd, fcntl.LOCK_UN)))
db = path + ".db"
if reader:
    c = sqlite3.connect("file:" + db + "?mode=ro", uri=True, isolation_level=None)
    def txn():
        c.execute("BEGIN"); c.execute("SELECT sum(bal) FROM acct").fetchone(); c.execute("COMMIT")
else:
    c = sqlite3.connect(db, isolation_level=None)
    c.execute("CREATE TABLE IF NOT EXISTS acct(id INTEGER PRIMARY KEY, bal INTEGER)")
    c.execute("INSERT OR IGNORE INTO acct VALUES (1, 1000), (2, 0)")
    def txn():
        c.execute("BEGIN IMMEDIATE")
        c.execute("UPDATE acct SET bal = bal - 1 WHERE id = 1")
        c.execute("UPDATE acct SET bal = bal + 1 WHERE id = 2")
        c.execute("COMMIT")
print(f"{kind:16} {fcntl_rate:10.0f} {flock_rate:10.0f} {rate(txn):10.1f}")
PY
}

cleanup
rm -rf "$BENCH"
mkdir -p "$BENCH"
printf 'benchpw-not-secret\n' >"$BENCH/passfile"
"$VAULTFS" init "$BENCH/embedded/store" --passphrase-file "$BENCH/passfile" >/dev/null || exit 1
addrs=$("$SERVERS" start "$BENCH/servers") || exit 1
VAULTFS_STATE_DIR=$BENCH/cluster/state "$VAULTFS" init "$(sed -n 1p <<<"$addrs")/bench" \
  --data "$(sed -n 2p <<<"$addrs")" --passphrase-file "$BENCH/passfile" >/dev/null || exit 1
mount "$BENCH/embedded/state" "$BENCH/embedded/store" "$BENCH/embedded/mnt"
mount "$BENCH/cluster/state" "$(sed -n 1p <<<"$addrs")/bench" "$BENCH/cluster/mnt"
echo "locked file" >"$BENCH/embedded/mnt/1-working/f"
echo "locked file" >"$BENCH/cluster/mnt/1-working/f"
echo "load1 $(cut -d' ' -f1 /proc/loadavg) at $(date +%T), ${SECS} s a row"
printf '%-16s %10s %10s %10s\n' "" "fcntl/s" "flock/s" "sqlite/s"
probe embedded "$BENCH/embedded/mnt/1-working/f"
probe holder-alone "$BENCH/cluster/mnt/1-working/f"
mount "$BENCH/cluster/state-ro" "$(sed -n 1p <<<"$addrs")/bench" "$BENCH/cluster/mnt-ro" ro
probe holder+reader "$BENCH/cluster/mnt/1-working/f"
for _ in $(seq 1 30); do [ -e "$BENCH/cluster/mnt-ro/1-working/f.db" ] && break; sleep 0.1; done
probe cluster-reader "$BENCH/cluster/mnt-ro/1-working/f"
echo "load1 $(cut -d' ' -f1 /proc/loadavg) at $(date +%T)"
