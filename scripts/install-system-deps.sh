#!/usr/bin/env bash
# Installs the Debian packages listed in scripts/system-packages.txt that are missing.
# A no-op when all are present. As root it installs them; otherwise it stops and prints
# the one apt-get line to run.
#
# Recommends are deliberately not installed (--no-install-recommends): the list names
# every package the project uses, Podman's recommends uidmap and catatonit included, so a
# machine that once ran a plain `apt-get install podman` behaves like a fresh one.
set -euo pipefail
list="$(dirname "$0")/system-packages.txt"
mapfile -t packages < <(sed -e 's/#.*//' "$list" | tr -s ' \t' '\n' | grep -v '^$')

missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${missing[*]}" >&2
  echo "run as root: apt-get install -y --no-install-recommends ${missing[*]}" >&2
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
