#!/usr/bin/env bash
# The Debian packages speechrole needs: for the bundled voices espeak-ng (English and Mandarin), flite and
# festival with two voices. Idempotent: installs only what is missing. Run by `make`.
set -euo pipefail
# ffmpeg: media extraction in the data pipeline. chromium and its driver: the browser tests (selenium).
PACKAGES="espeak-ng flite festival festvox-us-slt-hts festvox-kallpc16k ffmpeg chromium chromium-driver"
missing=""
for p in $PACKAGES; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "speechrole: install these packages with your system's package manager:$missing" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "speechrole: installing Debian packages:$missing"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
