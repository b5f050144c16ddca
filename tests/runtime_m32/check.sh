#!/bin/sh
# check.sh CC SOURCE_DIR OUT_DIR: builds run_models.c with the runtime as 64-bit and as 32-bit
# code (-m32; needs gcc-multilib, which tools/setup.sh installs on amd64) and checks that both
# give identical results on the fuzz seed models.
set -eu
cc="$1"; src="$2"; out="$3"
mkdir -p "$out"
flags="-std=c99 -O2 -Wall -Wextra -I$src"
files="$src/tests/runtime_m32/run_models.c $src/runtime/lbm.c"
$cc $flags -o "$out/run64" $files
$cc $flags -m32 -o "$out/run32" $files || { echo "FAIL: cannot build with -m32 (apt-get install gcc-multilib)"; exit 1; }
models=$(ls "$src"/tests/fuzz/corpus/lbm/*.lbm)
"$out/run64" $models > "$out/out64.txt"
"$out/run32" $models > "$out/out32.txt"
grep -q "load ok" "$out/out64.txt" || { echo "FAIL: no model loaded"; exit 1; }
if cmp -s "$out/out64.txt" "$out/out32.txt"; then
    echo "runtime -m32 and -m64 agree on $(echo $models | wc -w) models"
else
    diff "$out/out64.txt" "$out/out32.txt"; exit 1
fi
