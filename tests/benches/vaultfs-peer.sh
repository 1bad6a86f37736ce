#!/usr/bin/env bash
# Stand-in for the vaultfs binary when running ../shared/bench/run_peers.sh:
#   VAULTFS=$PWD/tests/benches/vaultfs-peer.sh ../shared/bench/run_peers.sh 2
#
# The peer benchmark writes at the mount root, where vaultfs holds only the six
# level directories (creating files there is EPERM by design). So for
# `mount -f ... STORE MNT` this wrapper mounts the vault at MNT.vault and
# bind-mounts its 1-working directory (where agents write) onto MNT; a bind
# mount adds no work per operation. When run_peers unmounts MNT, the wrapper
# unmounts the vault (flushing it) and exits. Every other command goes
# straight to the real binary.
set -euo pipefail
BIN=${VAULTFS_REAL:-$(cd "$(dirname "$0")/../.." && pwd)/target/release/vaultfs}

# VAULTFS_INIT_ARGS (e.g. "--block-size 4096") is added to `init`.
if [ "${1:-}" = init ]; then
  # shellcheck disable=SC2086
  exec "$BIN" "$@" ${VAULTFS_INIT_ARGS:-}
fi
if [ "${1:-}" != mount ]; then
  exec "$BIN" "$@"
fi

args=("$@")
n=${#args[@]}
mnt=${args[n-1]}
inner="$mnt.vault"
mkdir -p "$inner"
"$BIN" "${args[@]:0:n-1}" "$inner" &
daemon=$!

for _ in $(seq 1 600); do
  mountpoint -q "$inner" && break
  kill -0 "$daemon" 2>/dev/null || { echo "vaultfs-peer: vault daemon exited" >&2; exit 1; }
  sleep 0.1
done
mount --bind "$inner/1-working" "$mnt"

stop() {
  mountpoint -q "$mnt" && umount "$mnt"
  "$BIN" umount "$inner" || umount -l "$inner"
  wait "$daemon" || true
  exit 0
}
trap stop TERM INT
while mountpoint -q "$mnt"; do sleep 0.2; done
stop
