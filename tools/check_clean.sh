#!/usr/bin/env bash
# Fails, naming the files, when nbdev_clean, nbdev_export or the README render would change
# anything: the notebooks are the source, the package and README.md must match them.
set -euo pipefail
cd "$(dirname "$0")/.."
snapshot() {
  { git ls-files -co --exclude-standard -- nbs vlsa README.md; } | sort -u | while read -r f; do
    [ -f "$f" ] && printf '%s %s\n' "$(sha1sum < "$f" | cut -c1-40)" "$f"
  done
}
before=$(snapshot)
nbdev_clean >/dev/null
nbdev_export
python tools/render_readme.py >/dev/null
after=$(snapshot)
changed=$(diff <(echo "$before") <(echo "$after") | awk '/^[<>]/{print $3}' | sort -u || true)
if [ -n "$changed" ]; then
  echo "make check: these files were out of date (nbdev_clean / nbdev_export / README) and have now been rewritten:" >&2
  echo "$changed" | sed 's/^/  /' >&2
  echo "Review and commit them." >&2
  exit 1
fi
echo "make check: notebooks clean, package and README in sync"
