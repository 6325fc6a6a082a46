#!/usr/bin/env bash
# Installs the real peers the tests run against, when missing:
# a Distribution registry, skopeo, umoci, podman, containerd (Debian) and moto (PyPI).
set -euo pipefail

declare -A package_of=(
  [docker-registry]=docker-registry
  [skopeo]=skopeo
  [umoci]=umoci
  [podman]=podman
  [containerd]=containerd
  [ctr]=containerd
)

missing=()
for tool in "${!package_of[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${package_of[$tool]}")
done

if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

python=$(command -v python3 || true)
if [ -z "$python" ]; then
  echo "python3 is needed for moto (the AWS emulator)" >&2
  exit 1
fi
if ! command -v moto_server >/dev/null 2>&1; then
  echo "installing: moto[server] (PyPI)"
  # A distribution's own Python refuses pip installs (PEP 668) unless told.
  "$python" -m pip install --quiet 'moto[server]' 2>/dev/null \
    || "$python" -m pip install --quiet --break-system-packages 'moto[server]'
fi

for tool in "${!package_of[@]}" moto_server; do
  command -v "$tool" >/dev/null 2>&1 || { echo "still missing after install: $tool" >&2; exit 1; }
done
echo "test tools ready: ${!package_of[*]} moto_server"
