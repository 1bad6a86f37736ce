#!/usr/bin/env bash
# One etcd and one SeaweedFS S3 gateway on loopback, for trying a cluster
# vault by hand and for benchmarks (tests start their own: tests/common/cluster.rs).
#
#   tests/cluster/servers.sh start DIR   # prints the etcd and S3 addresses
#   tests/cluster/servers.sh stop DIR
#
# Ports: ETCD_PORT (default 23790; peer port +10), S3_PORT (default 28333;
# weed's master, volume and filer take S3_PORT+1..+3, and each of the four
# its gRPC port at +10000). BUCKET (default vault-data) is created.
set -euo pipefail
cmd=${1:?usage: servers.sh start|stop DIR}
dir=$(mkdir -p "${2:?usage: servers.sh start|stop DIR}" && cd "$2" && pwd)
etcd_port=${ETCD_PORT:-23790}
s3=${S3_PORT:-28333}
bucket=${BUCKET:-vault-data}

stop() {
  for f in etcd weed; do
    if [ -f "$dir/$f.pid" ]; then
      pid=$(cat "$dir/$f.pid")
      # weed's filer waits 15 s for open gRPC streams on TERM: -9 (its
      # files survive that). It leaves its sockets in /tmp, named by port;
      # a new weed on the same ports replaces them.
      if [ "$f" = weed ]; then kill -9 "$pid" 2>/dev/null || true; else kill "$pid" 2>/dev/null || true; fi
      # Gone, or a zombie (nobody may reap it soon): ports released.
      for _ in $(seq 1 100); do ps -o stat= -p "$pid" 2>/dev/null | grep -qv Z || break; sleep 0.1; done
      rm -f "$dir/$f.pid"
    fi
  done
}

wait_for() { # WHAT LOG COMMAND...
  local what=$1 log=$2; shift 2
  for _ in $(seq 1 600); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "servers.sh: $what did not start; see $log" >&2
  tail -20 "$log" >&2
  exit 1
}

case $cmd in
stop) stop ;;
start)
  stop
  peer=$((etcd_port + 10))
  # The vault's transactions can be large (docs/CLUSTER.md).
  nohup etcd --name m0 --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "m0=http://127.0.0.1:$peer" \
    --max-txn-ops 100000 --max-request-bytes 33554432 --auto-compaction-retention 1h \
    >"$dir/etcd.log" 2>&1 </dev/null &
  echo $! >"$dir/etcd.pid"
  mkdir -p "$dir/weed"
  # exec: the pid file names weed itself, not a subshell. Logs only to
  # weed.log (no glog files in /tmp); -volume.max=0: as many volumes as the
  # disk holds (each bucket takes 7 at once; the default is 8 in all);
  # a 1 s master election timeout: a restart serves in seconds, not 15.
  (cd "$dir" && exec nohup weed -logtostderr server -dir="$dir/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3 \
    -master.volumeSizeLimitMB=256 -volume.max=0 -master.electionTimeout=1s \
    -master.telemetry=false -s3.port.iceberg=0 -s3.port.lance=0 \
    -s3.port=$s3 -s3.port.grpc=$((s3 + 10000)) \
    -master.port=$((s3 + 1)) -master.port.grpc=$((s3 + 10001)) \
    -volume.port=$((s3 + 2)) -volume.port.grpc=$((s3 + 10002)) \
    -filer.port=$((s3 + 3)) -filer.port.grpc=$((s3 + 10003))) \
    >"$dir/weed.log" 2>&1 </dev/null &
  echo $! >"$dir/weed.pid"
  wait_for etcd "$dir/etcd.log" sh -c "curl -sf -m 2 http://127.0.0.1:$etcd_port/health | grep -q '\"health\":\"true\"'"
  # The bucket (409 if it is already there), then an object: the volume
  # server has joined when an object can be stored.
  wait_for weed "$dir/weed.log" sh -c "curl -s -m 2 -o /dev/null -w '%{http_code}' -X PUT http://127.0.0.1:$s3/$bucket | grep -qE '200|409'"
  wait_for weed "$dir/weed.log" sh -c "curl -sf -m 2 -X PUT --data-binary x http://127.0.0.1:$s3/$bucket/.probe"
  curl -s -m 2 -X DELETE "http://127.0.0.1:$s3/$bucket/.probe" >/dev/null || true
  echo "etcd://127.0.0.1:$etcd_port"
  echo "s3+http://127.0.0.1:$s3/$bucket"
  ;;
*) echo "usage: servers.sh start|stop DIR" >&2; exit 2 ;;
esac
