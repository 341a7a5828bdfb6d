#!/usr/bin/env bash
# Open a varsky report in a real browser (headless Chromium) and save a screenshot of its first
# screens: the check that the page renders as a reader sees it.
#
#   bash docs/screenshot_report.sh [REPORT_HTML] [PNG]
#   (defaults: demo_output/classified/report/report.html, docs/images/report.png;
#    Chromium from your system's packages, e.g. apt-get install chromium)
set -euo pipefail
page=${1:-demo_output/classified/report/report.html}
png=${2:-docs/images/report.png}
[ -f "$page" ] || { echo "screenshot_report.sh: $page not found: run make demo first" >&2; exit 2; }
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$browser" ] || { echo "screenshot_report.sh: no Chromium on PATH" >&2; exit 2; }
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1200,2200 \
  --screenshot="$(realpath -m "$png")" "file://$(realpath "$page")" 2>/dev/null
echo "screenshot_report.sh: $page -> $png"
