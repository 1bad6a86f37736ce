# Sourced by the benches of a cluster vault on two hosts (approvals.sh,
# reader-names.sh): one etcd and one SeaweedFS on loopback
# (tests/cluster/servers.sh), stopped at exit; `holder_up NAME` makes vault
# NAME and mounts it on host a at $BENCH/mnt-a, `reader_up` mounts it
# read-only on host b at $BENCH/mnt-b; `on HOST ARGS...` runs vaultfs as
# that host. Needs ROOT, VAULTFS and BENCH set; ETCD_PORT and S3_PORT
# exported.

cleanup() {
  for m in "$BENCH/mnt-b" "$BENCH/mnt-a"; do
    mountpoint -q "$m" 2>/dev/null && { umount "$m" 2>/dev/null || umount -l "$m"; }
  done
  # The daemons' last commits need etcd: give them a moment first.
  sleep 2
  "$ROOT/tests/cluster/servers.sh" stop "$BENCH/servers" >/dev/null 2>&1
}

on() { local host=$1; shift; VAULTFS_STATE_DIR=$BENCH/$host VAULTFS_HOST=host-$host "$VAULTFS" "$@"; }

holder_up() {
  trap cleanup EXIT
  rm -rf "$BENCH" && mkdir -p "$BENCH"/{a,b,mnt-a,mnt-b}
  "$ROOT/tests/cluster/servers.sh" start "$BENCH/servers" >/dev/null
  address=etcd://127.0.0.1:$ETCD_PORT/$1$$
  printf '%s-bench-not-secret\n' "$1" > "$BENCH/pass"
  on a init "$address" --data "s3+http://127.0.0.1:$S3_PORT/vault-data" \
    --passphrase-file "$BENCH/pass" --kdf-memory 8 --kdf-passes 1 >/dev/null 2>&1
  on a mount "$address" "$BENCH/mnt-a" --passphrase-file "$BENCH/pass" 2>/dev/null
}

reader_up() {
  # Returns once the holder said it saw the reader (CLUSTER.md).
  on b mount "$address" "$BENCH/mnt-b" --passphrase-file "$BENCH/pass" -o ro 2>/dev/null
}
