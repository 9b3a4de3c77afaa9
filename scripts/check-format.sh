#!/bin/sh
# Checks every C file in git against .clang-format (clang-format 14, as
# Debian 12 ships it); prints the files that differ. Exit 77 (skipped) when
# clang-format is missing, 1 when a file differs.
set -eu
cd "$(dirname "$0")/.."
CF=${CLANG_FORMAT:-clang-format}
command -v "$CF" >/dev/null 2>&1 || { echo "check-format: no $CF, skipped"; exit 77; }
bad=""
for f in $(git ls-files '*.c' '*.h' 2>/dev/null || find . -name '*.[ch]' -not -path './build*'); do
    "$CF" --dry-run --Werror "$f" >/dev/null 2>&1 || bad="$bad $f"
done
if [ -n "$bad" ]; then
    echo "check-format: these files differ from .clang-format (run clang-format -i on them):"
    for f in $bad; do echo "  $f"; done
    exit 1
fi
echo "check-format: $(git ls-files '*.c' '*.h' | wc -l) files clean"
