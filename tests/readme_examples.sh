#!/bin/sh
# The README's C and Python examples, run exactly as the README says, each in an empty
# directory: the C one against an installed copy of the library (cmake --install into a
# temporary prefix, compiled with `cc app.c $(pkg-config --cflags --libs tandem)`, and
# again through the CMake package), the Python one with PYTHONPATH=bindings/python. The C example must also be the file
# bindings/c/examples/two_devices.c, so that the two cannot drift apart.
#   readme_examples.sh SOURCE_DIR BUILD_DIR [SANITIZE]
set -eu
src="$1"
build="$2"
sanitize="${3:-OFF}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

block() {  # the first fenced block of language $1 in the README
  awk -v lang="$1" '
    $0 == "```" lang { inside = 1; next }
    inside && $0 == "```" { exit }
    inside { print }' "$src/README.md"
}

block c > "$tmp/app.c"
if ! cmp -s "$tmp/app.c" "$src/bindings/c/examples/two_devices.c"; then
  echo "README's C example differs from bindings/c/examples/two_devices.c:"
  diff "$tmp/app.c" "$src/bindings/c/examples/two_devices.c" || true
  exit 1
fi
cmake --install "$build" --prefix "$tmp/prefix" > "$tmp/install.log"
extra=""
[ "$sanitize" = "ON" ] && extra="-fsanitize=address,undefined"
mkdir "$tmp/c" && cd "$tmp/c"
cp "$tmp/app.c" .
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
# shellcheck disable=SC2046
cc $extra app.c $(pkg-config --cflags --libs tandem)
./a.out
ls -d a b > /dev/null  # it made its two replicas here

# The same program through the CMake package: find_package(Tandem) and Tandem::tandem.
mkdir "$tmp/cmake" && cd "$tmp/cmake"
cp "$tmp/app.c" .
cat > CMakeLists.txt <<'CMAKE'
cmake_minimum_required(VERSION 3.16)
project(app C)
find_package(Tandem REQUIRED)
add_executable(app app.c)
target_link_libraries(app PRIVATE Tandem::tandem)
CMAKE
flags=""
[ "$sanitize" = "ON" ] && flags="-DCMAKE_C_FLAGS=-fsanitize=address,undefined"
cmake -S . -B out -DCMAKE_PREFIX_PATH="$tmp/prefix" $flags > cmake.log
cmake --build out > build.log
mkdir run && cd run && ../out/app > /dev/null

block python > "$tmp/app.py"
[ -s "$tmp/app.py" ] || { echo "README has no python example"; exit 1; }
mkdir "$tmp/py" && cd "$tmp/py"
if [ "$sanitize" = "ON" ]; then
  export LD_PRELOAD="$(cc -print-file-name=libasan.so)"
  export ASAN_OPTIONS=detect_leaks=0
fi
PYTHONPATH="$src/bindings/python" TANDEM_LIBRARY="$build/libtandem.so" python3 "$tmp/app.py"
echo "readme examples: ok"
