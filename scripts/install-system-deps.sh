#!/usr/bin/env bash
# System packages the testbed runs: etcd, Podman, Slurm with munge, and an sshd.
# Skips apt entirely when everything is installed already.
set -euo pipefail

packages=(etcd-server podman runc busybox-static slurmctld slurmd slurm-client munge
          openssh-server openssh-client openssl iproute2 procps)

missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${missing[*]} (run as root: apt-get install -y ${missing[*]})" >&2
  exit 1
fi
echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts some of these on install where an init system runs; the testbed runs its own.
for svc in munge slurmctld slurmd ssh etcd; do
  command -v systemctl >/dev/null 2>&1 && systemctl disable --now "$svc" >/dev/null 2>&1 || true
done
