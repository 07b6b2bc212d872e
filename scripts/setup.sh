#!/usr/bin/env bash
# Install what the node needs on a Debian machine, then the Python virtual environment.
#   scripts/setup.sh          runtime: Debian packages + .venv with requirements.txt
#   scripts/setup.sh --dev    also chromium + chromium-driver (browser test of the Explorer panel)
#                             and requirements-dev.txt (PyTorch CPU, onnx, selenium) for tests and training
# Idempotent: installs only what is missing; re-installs Python packages when a requirements file changed.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(orthanc orthanc-python dcmtk dicom3tools python3-venv)
if [ "${1:-}" = "--dev" ]; then
  DEBIAN_PACKAGES+=(chromium chromium-driver)  # headless browser for tests/integration/test_explorer.py
fi
missing=()
for package in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # Debian's package starts a system-wide Orthanc on 8042/4242; the node runs its own instead.
  if [[ " ${missing[*]} " == *" orthanc "* ]] && command -v systemctl >/dev/null \
     && systemctl is-active --quiet orthanc 2>/dev/null; then
    $sudo systemctl disable --now orthanc || true
  fi
fi

# The plugin embeds Debian's Python: the venv must be made from that same interpreter.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(sys.base_prefix != "/usr")'; then
  rm -rf .venv
  /usr/bin/python3 -m venv .venv
fi
install() {  # install a requirements file when it changed since the last install
  local file=$1 stamp=".venv/.installed-$1"
  if ! cmp -s "$file" "$stamp"; then
    .venv/bin/pip install --quiet --disable-pip-version-check -r "$file"
    cp "$file" "$stamp"
  fi
}
install requirements.txt
if [ "${1:-}" = "--dev" ]; then
  install requirements-dev.txt
fi
