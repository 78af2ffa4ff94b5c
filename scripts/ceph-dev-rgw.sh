#!/usr/bin/env bash
# A throwaway single-node Ceph with an S3 gateway (RGW) on 127.0.0.1, for tests and for trying
# llmpipe's warm storage without a real cluster. Everything lives under DIR; no systemd, no root
# paths, no disks (the OSD is `memstore`: objects live in RAM and vanish on stop).
#
#   scripts/ceph-dev-rgw.sh start DIR [RGW_PORT]   # one mon, one mgr, one OSD, one RGW + S3 user
#   scripts/ceph-dev-rgw.sh restart-rgw DIR        # (re)start only the gateway; objects are kept
#   scripts/ceph-dev-rgw.sh stop DIR               # stop the daemons (data is lost: memstore)
#   scripts/ceph-dev-rgw.sh clean DIR              # stop, then delete DIR
#
# `start` prints, and writes to DIR/rgw.env, the lines a client needs:
#   RGW_ENDPOINT=http://127.0.0.1:PORT  AWS_ACCESS_KEY_ID=...  AWS_SECRET_ACCESS_KEY=...
# Needs the Debian packages ceph-mon ceph-osd ceph-mgr radosgw ceph-common (scripts/ceph-install.sh).
#
# Not for production: `auth ... = none` (no cephx) and a pool size of 1 (no replicas).
set -euo pipefail

die() { echo "ceph-dev-rgw: $*" >&2; exit 1; }
log() { echo "ceph-dev-rgw: $*" >&2; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Retry a command until it succeeds or TIMEOUT seconds pass.
wait_for() {
  local what=$1 timeout=$2; shift 2
  local t0=$SECONDS
  until "$@" >/dev/null 2>&1; do
    if (( SECONDS - t0 > timeout )); then
      die "timed out after ${timeout}s waiting for $what (logs: $DIR/log)"
    fi
    sleep 0.5
  done
}

stop_daemons() {
  local pidfile pid
  # Reverse start order: gateway first, monitor last.
  for name in client.rgw.a osd.0 mgr.a mon.a; do
    pidfile="$DIR/run/$name.pid"
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
}

write_conf() {
  local fsid=$1 mon_port=$2 rgw_port=$3
  cat > "$CONF" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$mon_port
mon initial members = a
public addr = 127.0.0.1
ms bind msgr1 = false
# No cephx: a local dev cluster only.
auth cluster required = none
auth service required = none
auth client required = none
# One OSD: every pool has one replica and few placement groups.
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon allow pool delete = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
# Keep the mon running on a nearly full disk (it defaults to refusing below 5% free).
mon data avail crit = 1
mon data avail warn = 2
osd objectstore = memstore
memstore device bytes = 2147483648
# With auth none the OSD's own CRUSH/class update at start-up is rejected ("wrong fsid") and the
# OSD exits; this script places the OSD in CRUSH itself instead.
osd crush update on start = false
osd class update on start = false
run dir = $DIR/run
pid file = $DIR/run/\$name.pid
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
mon data = $DIR/mon/\$id
mgr data = $DIR/mgr/\$id
osd data = $DIR/osd/\$id
keyring = $DIR/keyring
mgr initial modules = status
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$rgw_port
rgw data = $DIR/rgw
rgw thread pool size = 32
# radosgw asks for a "secure" monitor connection by default, which auth none cannot provide
# (every attempt fails with -13, EACCES); plain crc mode works.
ms mon client mode = crc
EOF
}

rgw_port() { sed -n 's/^rgw frontends = beast endpoint=127.0.0.1:\([0-9]*\)$/\1/p' "$CONF"; }

# (Re)start only the gateway of an existing cluster; objects stay in the OSD meanwhile.
start_rgw() {
  local port pidfile="$DIR/run/client.rgw.a.pid"
  port=$(rgw_port)
  [ -n "$port" ] || die "no cluster config in $DIR (run: $0 start $DIR)"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill "$(cat "$pidfile")"
    for _ in $(seq 1 40); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.25; done
  fi
  rm -f "$pidfile" "$DIR/run/client.rgw.a.asok"
  log "rgw on 127.0.0.1:$port"
  radosgw -c "$CONF" -n client.rgw.a </dev/null >>"$DIR/log/daemons.out" 2>&1
  wait_for "the RGW to answer HTTP" 120 python3 -c "
import urllib.request, urllib.error
try:
    urllib.request.urlopen('http://127.0.0.1:$port/', timeout=2)
except urllib.error.HTTPError:
    pass  # any HTTP answer (even 403) means the gateway is serving
"
}

start() {
  for b in ceph-mon ceph-osd ceph-mgr radosgw ceph radosgw-admin monmaptool; do
    command -v "$b" >/dev/null 2>&1 || die "$b not found: run scripts/ceph-install.sh"
  done
  if [ -f "$DIR/run/mon.a.pid" ] && kill -0 "$(cat "$DIR/run/mon.a.pid")" 2>/dev/null; then
    die "a cluster is already running in $DIR (stop it first: $0 stop $DIR)"
  fi
  rm -rf "$DIR/mon" "$DIR/mgr" "$DIR/osd" "$DIR/rgw" "$DIR/run" "$DIR/log" "$DIR/rgw.env"
  mkdir -p "$DIR"/{mon/a,mgr/a,osd/0,rgw,run,log}

  local fsid mon_port rgw_port
  fsid=$(cat /proc/sys/kernel/random/uuid)
  mon_port=$(free_port)
  rgw_port=${1:-$(free_port)}
  write_conf "$fsid" "$mon_port" "$rgw_port"
  : > "$DIR/keyring"   # must exist even with auth none

  log "mon on 127.0.0.1:$mon_port"
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" "$DIR/monmap" >/dev/null
  ceph-mon -c "$CONF" -i a --mkfs --monmap "$DIR/monmap" </dev/null >>"$DIR/log/daemons.out" 2>&1
  ceph-mon -c "$CONF" -i a </dev/null >>"$DIR/log/daemons.out" 2>&1
  wait_for "the monitor" 60 ceph -c "$CONF" --connect-timeout 5 mon stat

  log "mgr"
  ceph-mgr -c "$CONF" -i a </dev/null >>"$DIR/log/daemons.out" 2>&1

  log "osd.0 (memstore)"
  local osd_uuid osd_id
  osd_uuid=$(cat /proc/sys/kernel/random/uuid)
  osd_id=$(ceph -c "$CONF" osd new "$osd_uuid")
  [ "$osd_id" = 0 ] || die "expected osd id 0, got $osd_id"
  ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$osd_uuid" </dev/null >>"$DIR/log/daemons.out" 2>&1
  # The CRUSH placement the OSD would have done itself (see `osd crush update on start`).
  ceph -c "$CONF" osd crush add-bucket localhost host >/dev/null 2>&1
  ceph -c "$CONF" osd crush move localhost root=default >/dev/null 2>&1
  ceph -c "$CONF" osd crush add osd.0 1.0 host=localhost >/dev/null 2>&1
  ceph-osd -c "$CONF" -i 0 </dev/null >>"$DIR/log/daemons.out" 2>&1
  wait_for "osd.0 to come up" 90 bash -c "ceph -c '$CONF' osd dump 2>/dev/null | grep -q '^osd.0 up'"

  start_rgw

  # Random S3 keys for this throwaway cluster; printed once, never stored in a repo.
  local access secret
  access=$(python3 -c 'import secrets; print(secrets.token_hex(10).upper())')
  secret=$(python3 -c 'import secrets; print(secrets.token_hex(20))')  # hex: never starts with '-'
  radosgw-admin -c "$CONF" user create --uid=llmpipe --display-name=llmpipe \
    --access-key="$access" --secret-key="$secret" >/dev/null
  {
    echo "RGW_ENDPOINT=http://127.0.0.1:$rgw_port"
    echo "AWS_ACCESS_KEY_ID=$access"
    echo "AWS_SECRET_ACCESS_KEY=$secret"
  } > "$DIR/rgw.env"
  chmod 600 "$DIR/rgw.env"
  log "ready in $((SECONDS))s; credentials in $DIR/rgw.env"
  cat "$DIR/rgw.env"
}

[ $# -ge 2 ] || die "usage: $0 start|restart-rgw|stop|clean DIR [RGW_PORT]"
cmd=$1
DIR=$(mkdir -p "$2" && cd "$2" && pwd)
CONF="$DIR/ceph.conf"
shift 2
case "$cmd" in
  start) start "$@" ;;
  restart-rgw) start_rgw; log "rgw ready" ;;
  stop) stop_daemons; log "stopped" ;;
  clean)
    stop_daemons
    # Only ever delete a directory this script set up (guards against `clean $HOME`).
    if [ -f "$CONF" ] || [ -z "$(ls -A "$DIR")" ]; then
      rm -rf "$DIR"; log "stopped and removed $DIR"
    else
      die "$DIR has no ceph.conf: not a ceph-dev-rgw directory, not removing it"
    fi ;;
  *) die "unknown command $cmd (start|restart-rgw|stop|clean)" ;;
esac
