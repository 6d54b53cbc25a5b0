#!/usr/bin/env bash
# Render an edgekit HTML report in headless Chromium and save a screenshot, to check that
# the page (table + SVG charts) really renders. Needs Debian's chromium (apt-get install chromium).
#   samples/render_report.sh [build/demo/report.html] [report.png]
set -euo pipefail
report=$(realpath "${1:-build/demo/report.html}")
png=${2:-report.png}
command -v chromium >/dev/null || { echo "chromium is not installed: apt-get install chromium" >&2; exit 4; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$profile" --window-size=1400,1100 \
  --screenshot="$png" "file://$report" 2>/dev/null
test -s "$png" && echo "rendered $report -> $png"
