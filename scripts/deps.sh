#!/usr/bin/env bash
# Installs the tools the integration tests and the quick start use, with apt-get, only
# when one of them is missing. Non-interactive, quiet, idempotent.
set -euo pipefail

# command -> Debian package
declare -A PKG=(
    [ip]=iproute2
    [ss]=iproute2
    [ping]=iputils-ping
    [iperf3]=iperf3
    [ethtool]=ethtool
    [tcpdump]=tcpdump
    [socat]=socat
    [ps]=procps
    [sysctl]=procps
    [killall]=psmisc
    [python3]=python3
    [timeout]=coreutils
    [curl]=curl
    [podman]=podman
    [promtool]=prometheus
    [scapy]=python3-scapy
    [ovs-vswitchd]=openvswitch-switch
    [ovsdb-server]=openvswitch-switch
    [ovs-vsctl]=openvswitch-switch
    [ovsdb-tool]=openvswitch-common
    [ovs-appctl]=openvswitch-common
    [iptables]=iptables
    [nsenter]=util-linux
    [dockerd]=docker.io
    [busybox]=busybox-static
    [etcd]=etcd-server
    [etcdctl]=etcd-client
    [protoc]=protobuf-compiler
    [openssl]=openssl
    [dnsmasq]=dnsmasq-base
    [wireguard-go]=wireguard-go
    [wg]=wireguard-tools
    [nc]=netcat-openbsd
)

missing=()
for cmd in "${!PKG[@]}"; do
    if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ] && [ ! -x "/sbin/$cmd" ]; then
        missing+=("${PKG[$cmd]}")
    fi
done

# Files rather than commands on PATH: the CNI plugins live in /usr/lib/cni, a Python
# module in dist-packages.
declare -A FILE_PKG=(
    [/usr/lib/cni/host-local]=containernetworking-plugins
    [/usr/lib/cni/bridge]=containernetworking-plugins
    # The slow disk under an etcd's WAL in the cluster tests (testlab/src/slowdisk.rs).
    [/usr/lib/python3/dist-packages/fusepy.py]=python3-fusepy
)
for f in "${!FILE_PKG[@]}"; do
    [ -e "$f" ] || missing+=("${FILE_PKG[$f]}")
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "deps: all tools present"
    exit 0
fi

# Unique package names.
mapfile -t pkgs < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "deps: installing ${pkgs[*]}"

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "deps: need root to install ${pkgs[*]} (run: sudo bash scripts/deps.sh)" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
# Packages such as openvswitch-switch would start their system service in the machine's
# own namespace; we only want the programs. A temporary policy-rc.d forbids service
# starts during the install (and only if the machine has none of its own).
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod 755 "$policy"
    trap '"${SUDO[@]}" rm -f "$policy"' EXIT
fi
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${pkgs[@]}" >/dev/null
echo "deps: installed ${pkgs[*]}"
