#!/usr/bin/env bash
# A simulated cluster on this machine, for tests and benchmarks of multi-host runs (root; iproute2).
#
#   infra/cluster.sh up N [--cores-per-host C] [--subnet 10.77.0]   # N hosts azr-h1..azr-hN
#   infra/cluster.sh hosts                                         # "azr-h1 10.77.0.1 cores=0" per line
#   infra/cluster.sh exec HOST -- COMMAND ...                      # run COMMAND on a host (its network, its cores)
#   infra/cluster.sh status                                        # up or down, exit 0 / 3
#   infra/cluster.sh down                                          # everything it made, also a half-made cluster
#
# Each host is a Linux network namespace with its own address, joined by a veth pair to a bridge that lives in a
# namespace of its own (azr-net): the machine's own network namespace gets no interface and no address on the
# cluster's subnet, so nothing of the cluster is reachable from it, nor anything beyond the machine from a host.
# A host's compute is its own: `exec` pins COMMAND to the host's CPU set (--cores-per-host, hosts taking the cores in
# turn, wrapping around when there are more hosts than cores). The filesystem is the machine's, shared by all hosts
# as a cluster's shared storage would be. There is no sshd: a launcher runs on each host through `exec` (DeepSpeed's
# --no_ssh mode with --node_rank), as a scheduler would start it.
#
# One cluster per machine: the hosts' names are fixed, so `down` (and an `up` of another shape) removes any azr-h*
# namespace, whichever state folder made it; two test runs at once must not both use it.
# `up` is idempotent: a complete cluster of the same shape is left as it is; a half-made one (a failed `up`, or
# namespaces left by a killed run) or one of another shape is torn down first. A failing `up` tears down what it made.
set -euo pipefail

PREFIX=azr-h
NET_NS=azr-net
BRIDGE=azrbr0
STATE_DIR=${AZR_CLUSTER_STATE:-/run/azr-cluster}
STATE=$STATE_DIR/state

die() { echo "cluster.sh: $*" >&2; exit 2; }
need_root() { [ "$(id -u)" = 0 ] || die "needs root (network namespaces): run it as root"; command -v ip >/dev/null || die "needs iproute2 (apt-get install -y iproute2)"; }

our_namespaces() {
  local all
  all=$(ip netns list 2>/dev/null | awk '{print $1}')
  grep -E "^(${PREFIX}[0-9]+|${NET_NS})$" <<< "$all" || true
}

read_state() { # sets HOSTS, CORES, SUBNET from the state file, or fails
  [ -f "$STATE" ] || return 1
  # shellcheck disable=SC1090
  . "$STATE"
}

host_cores() { # host index -> its CPU list ("0" or "0-1" or "2,3")
  local k=$1 per=$2 n first list="" c
  n=$(nproc --all)  # every CPU: plain nproc counts only those of the caller's CPU set (a host's, inside `exec`)
  first=$(( (k - 1) * per ))
  for ((c = 0; c < per; c++)); do list+="${list:+,}$(( (first + c) % n ))"; done
  echo "$list"
}

complete() { # is the cluster in the state file fully there? (outputs captured first: `cmd | grep -q` under
  # pipefail fails whenever grep stops reading early)
  read_state || return 1
  local k ours addr
  ours=$(our_namespaces)
  grep -qx "$NET_NS" <<< "$ours" || return 1
  for ((k = 1; k <= HOSTS; k++)); do
    grep -qx "${PREFIX}$k" <<< "$ours" || return 1
    addr=$(ip -n "${PREFIX}$k" -o addr show dev eth0 2>/dev/null || true)
    grep -q "inet ${SUBNET}.$k/" <<< "$addr" || return 1
  done
  [ "$(grep -c "^${PREFIX}" <<< "$ours")" = "$HOSTS" ]
}

down() {
  local ns pids
  for ns in $(our_namespaces); do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    if [ -n "$pids" ]; then
      kill -TERM $pids 2>/dev/null || true
      for _ in 1 2 3 4 5 6 7 8 9 10; do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        [ -z "$pids" ] && break
        sleep 0.2
      done
      [ -n "$pids" ] && kill -KILL $pids 2>/dev/null || true
    fi
    ip netns del "$ns" 2>/dev/null || true  # its veth ends go with it
  done
  rm -f "$STATE"
}

up() {
  local n=$1 per=$2 subnet=$3 k host
  [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 250 ] || die "up N: N hosts, 1 to 250 (got '$n')"
  [[ "$per" =~ ^[0-9]+$ ]] && [ "$per" -ge 1 ] || die "--cores-per-host C: a positive number (got '$per')"
  [[ "$subnet" =~ ^10\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || die "--subnet: the first three octets of a 10.x.y.0/24 (got '$subnet')"
  if complete && [ "$HOSTS" = "$n" ] && [ "$CORES" = "$per" ] && [ "$SUBNET" = "$subnet" ]; then
    echo "cluster already up: $n hosts"
    return 0
  fi
  down
  trap 'echo "cluster.sh: up failed; tearing down what it made" >&2; down' ERR
  ip netns add "$NET_NS"
  ip -n "$NET_NS" link add "$BRIDGE" type bridge
  ip -n "$NET_NS" link set "$BRIDGE" up
  for ((k = 1; k <= n; k++)); do
    host=${PREFIX}$k
    ip netns add "$host"
    ip -n "$host" link set lo up
    # made inside the host's namespace, so no end of the pair ever sits in the machine's own namespace
    ip -n "$host" link add eth0 type veth peer name "h$k" netns "$NET_NS"
    ip -n "$host" addr add "$subnet.$k/24" dev eth0
    ip -n "$host" link set eth0 up
    ip -n "$NET_NS" link set "h$k" master "$BRIDGE"
    ip -n "$NET_NS" link set "h$k" up
  done
  mkdir -p "$STATE_DIR"
  printf 'HOSTS=%s\nCORES=%s\nSUBNET=%s\n' "$n" "$per" "$subnet" > "$STATE"
  trap - ERR
  echo "cluster up: $n hosts on $subnet.0/24"
  hosts
}

hosts() {
  read_state || die "no cluster is up (infra/cluster.sh up N)"
  local k
  for ((k = 1; k <= HOSTS; k++)); do echo "${PREFIX}$k $SUBNET.$k cores=$(host_cores "$k" "$CORES")"; done
}

exec_on() {
  local host=$1; shift
  [ "${1:-}" = "--" ] && shift
  [ $# -gt 0 ] || die "exec HOST -- COMMAND: no command"
  read_state || die "no cluster is up (infra/cluster.sh up N)"
  [[ "$host" =~ ^${PREFIX}([0-9]+)$ ]] && [ "${BASH_REMATCH[1]}" -le "$HOSTS" ] && [ "${BASH_REMATCH[1]}" -ge 1 ] \
    || die "exec: unknown host '$host' (hosts: ${PREFIX}1..${PREFIX}$HOSTS)"
  local k=${BASH_REMATCH[1]}
  exec ip netns exec "$host" env AZR_HOST="$host" AZR_HOST_ADDR="$SUBNET.$k" AZR_HOST_RANK="$((k - 1))" \
    AZR_CLUSTER_HOSTS="$HOSTS" taskset -c "$(host_cores "$k" "$CORES")" "$@"
}

cmd=${1:-}
shift || true
case "$cmd" in
  up)
    need_root
    n=${1:-}; shift || true
    per=1; subnet=10.77.0
    while [ $# -gt 0 ]; do
      case "$1" in
        --cores-per-host) per=${2:-}; shift 2 ;;
        --subnet) subnet=${2:-}; shift 2 ;;
        *) die "up: unknown option '$1'" ;;
      esac
    done
    up "$n" "$per" "$subnet"
    ;;
  down) need_root; down; echo "cluster down" ;;
  hosts) hosts ;;
  exec) need_root; exec_on "$@" ;;
  status)
    if complete; then echo "up: $HOSTS hosts, $CORES cores each, $SUBNET.0/24"; else
      left=$(our_namespaces | tr '\n' ' ')
      echo "down${left:+ (half-made, left: $left; run infra/cluster.sh down)}"; exit 3
    fi
    ;;
  *) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; [ -z "$cmd" ] || [ "$cmd" = -h ] || [ "$cmd" = --help ] || exit 2 ;;
esac
