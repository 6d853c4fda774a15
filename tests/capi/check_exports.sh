#!/bin/sh
# libtandem.so and libtandem.a define no global symbol but tandem_* (the static library
# also carries the C++ library's weak template instances, which are not ours to hide).
set -eu
so="$1"
a="$2"
bad=$(nm -D --defined-only "$so" | awk '{print $NF}' | grep -v '^tandem_' || true)
if [ -n "$bad" ]; then
  echo "libtandem.so exports symbols other than tandem_*:"; echo "$bad" | head -20; exit 1
fi
bad=$(nm -g --defined-only "$a" | awk 'NF==3 && $2!="W" && $2!="V" && $2!="u" {print $3}' \
      | grep -v '^tandem_' || true)
if [ -n "$bad" ]; then
  echo "libtandem.a defines global symbols other than tandem_*:"; echo "$bad" | head -20; exit 1
fi
n=$(nm -D --defined-only "$so" | grep -c ' T tandem_')
echo "exports: $n tandem_* functions, nothing else"
