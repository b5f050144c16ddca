#!/usr/bin/env bash
# run.sh: builds the benchmark firmware for an exported model with N embedded test images,
# runs it on an emulated Arm Cortex-M4 (qemu-system-arm -M mps2-an386, -icount shift=0) and
# checks that its predictions and scores are identical to the same program built for this
# machine. Prints the firmware's figures (flash, RAM, instructions per inference).
#
# usage: runtime/mcu/run.sh [options] MODEL
#   MODEL          NAME.c written by `lowbit export CKPT --format c --out NAME` (NAME.h
#                  beside it), or a .lbm file; with --float, the weights file of the float
#                  LeNet-5 reference (experiments/mcu/fp32_weights.py)
#   --images FILE  IDX images (idx3-ubyte, gzip or plain)    [MNIST t10k from ../shared/datasets]
#   --labels FILE  IDX labels: also report accuracy           [MNIST t10k labels, with the default images]
#   -n N           number of images                           [100]
#   --float        MODEL is float weights for runtime/mcu/lenet5_f32.c
#   --opt FLAG     optimisation for both builds               [-O2]
#   --out DIR      where to build                             [a temporary folder]
#   --arena BYTES  the firmware's arena                       [65536]
#   --backend FILE another implementation of mcu.h's backend instead of the model (tests)
#   --max-tensors N  LBM_MAX_TENSORS and LBM_MAX_OPS of both builds: lbm_load's stack holds
#                  6 bytes per tensor of this limit (runtime/lbm.h)  [64]
# Needs gcc-arm-none-eabi, libnewlib-arm-none-eabi and qemu-system-arm (Debian packages;
# tools/setup.sh installs them). Exit status 0 only when QEMU ran and every answer matched.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
die() { echo "run.sh: $*" >&2; exit 1; }

n=100; images=""; labels=""; float=0; opt=-O2; out=""; arena=65536; model=""; max_tensors=64; backend=""
while [ $# -gt 0 ]; do
    case "$1" in
        --images) images="$2"; shift 2 ;;
        --labels) labels="$2"; shift 2 ;;
        -n) n="$2"; shift 2 ;;
        --float) float=1; shift ;;
        --opt) opt="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --arena) arena="$2"; shift 2 ;;
        --max-tensors) max_tensors="$2"; shift 2 ;;
        --backend) backend="$2"; shift 2 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) [ -z "$model" ] || die "one model only"; model="$1"; shift ;;
    esac
done
if [ -n "$backend" ]; then
    [ -f "$backend" ] || die "$backend: no such file"
else
    [ -n "$model" ] || die "needs a model (see --help)"
    [ -f "$model" ] || die "$model: no such file"
fi
case "$n" in ''|*[!0-9]*) die "-n $n: expected a positive number" ;; esac
[ "$n" -ge 1 ] || die "-n $n: expected a positive number"
for tool in arm-none-eabi-gcc arm-none-eabi-size qemu-system-arm cc od awk; do
    command -v "$tool" >/dev/null ||
        die "$tool not found (apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm)"
done
if [ -z "$images" ]; then
    for d in "${LOWBIT_DATA:-}" "$root/../shared/datasets" "$root/../shared/datasets/mnist"; do
        [ -n "$d" ] || continue
        for f in "$d/t10k-images-idx3-ubyte" "$d/t10k-images-idx3-ubyte.gz" \
                 "$d/mnist/t10k-images-idx3-ubyte" "$d/mnist/t10k-images-idx3-ubyte.gz"; do
            if [ -z "$images" ] && [ -f "$f" ]; then
                images="$f"
                l="${f/images-idx3/labels-idx1}"
                [ -n "$labels" ] || [ ! -f "$l" ] || labels="$l"
            fi
        done
    done
    [ -n "$images" ] || die "no MNIST test images found: pass --images FILE"
fi
[ -f "$images" ] || die "$images: no such file"
[ -n "$out" ] || out="$(mktemp -d)"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# bytes FILE OFFSET COUNT: COUNT bytes from OFFSET of a (maybe gzipped) file, one decimal a line
# (head closes the pipe early: the SIGPIPE of gzip and tail is expected, hence no pipefail)
bytes() {
    (set +o pipefail
     gzip -dcf "$1" | tail -c +"$(($2 + 1))" | head -c "$3" | od -An -v -tu1 | tr -s ' ' '\n' |
         sed '/^$/d')
}
# c_array: decimal bytes on stdin -> C initializer lines
c_array() { awk '{ printf "%s,", $1; if (NR % 20 == 0) printf "\n" } END { printf "\n" }'; }

# 1. the test images as a C array (IDX: magic 0 0 8 3, count, rows, cols; big-endian u32)
read -r -a hdr <<< "$(bytes "$images" 0 16 | tr '\n' ' ')"
[ "${#hdr[@]}" -eq 16 ] && [ "${hdr[2]}" -eq 8 ] && [ "${hdr[3]}" -eq 3 ] ||
    die "$images: not an idx3-ubyte file"
be32() { echo $(( $1 << 24 | $2 << 16 | $3 << 8 | $4 )); }
count=$(be32 "${hdr[@]:4:4}"); rows=$(be32 "${hdr[@]:8:4}"); cols=$(be32 "${hdr[@]:12:4}")
[ "$n" -le "$count" ] || die "-n $n: $images holds $count images"
isz=$((rows * cols))
{
    echo "/* images.c: $n test images of $rows x $cols from $(basename "$images"), by run.sh */"
    echo "#include <stdint.h>"
    echo "const uint32_t mcu_n_images = $n, mcu_image_bytes = $isz;"
    echo "#ifdef __arm__"
    echo "__attribute__((section(\".testimages\")))"
    echo "#endif"
    echo "const uint8_t mcu_images[$((n * isz))] = {"
    bytes "$images" 16 $((n * isz)) | c_array
    echo "};"
} > "$out/images.c"

# 2. the model and the backend
if [ -n "$backend" ]; then
    srcs=("$backend")
    backend_objs="$(basename "$backend" .c)"
    defs=()
elif [ "$float" = 1 ]; then
    cp "$model" "$out/lenet5_f32_weights.c"
    srcs=("$here/lenet5_f32.c" "$out/lenet5_f32_weights.c")
    backend_objs="lenet5_f32"
    defs=()
else
    case "$model" in
        *.c)
            name="$(basename "$model" .c)"
            [ -f "${model%.c}.h" ] || die "${model%.c}.h missing (lowbit export --format c writes both)"
            cp "$model" "${model%.c}.h" "$out/"
            sym="$(echo "$name" | sed 's/[^A-Za-z0-9]/_/g')"
            # the export names its symbols after the name with every other character turned
            # into '_'; exports before the fix of 2026-11-25 also #included the header under
            # that name, so keep a copy of it there
            [ "$sym" = "$name" ] || cp "${model%.c}.h" "$out/$sym.h"
            mfile="$out/$name.c" ;;
        *)
            sym=model; mfile="$out/model.c"
            size=$(gzip -dcf "$model" | wc -c)
            {
                echo "/* model.c: $(basename "$model") ($size bytes) as a const array, by run.sh */"
                echo "#include <stddef.h>"
                echo "#include <stdint.h>"
                echo "_Alignas(16) const uint8_t model_lbm[$size] = {"
                bytes "$model" 0 "$size" | c_array
                echo "};"
                echo "const size_t model_lbm_size = $size;"
            } > "$mfile" ;;
    esac
    srcs=("$here/bench_lbm.c" "$root/runtime/lbm.c" "$mfile")
    backend_objs="bench_lbm lbm"
    defs=(-DMODEL_LBM="${sym}_lbm" -DMODEL_LBM_SIZE="${sym}_lbm_size" -DMCU_ARENA_BYTES="$arena"
          -DLBM_MAX_TENSORS="$max_tensors" -DLBM_MAX_OPS="$max_tensors")
fi

# 3. build: the firmware and the same program for this machine. -ffp-contract=off keeps the
# float reference's roundings identical on both (no fused multiply-add).
common=(-std=c11 "$opt" -Wall -Wextra -ffp-contract=off -I"$root" -I"$out" "${defs[@]}")
arm=(-mcpu=cortex-m4 -mthumb -mfpu=fpv4-sp-d16 -mfloat-abi=hard -ffunction-sections -fdata-sections)
objs=()
for s in "$here/bench.c" "$here/startup.c" "${srcs[@]}" "$out/images.c"; do
    o="$out/$(basename "$s" .c).o"
    arm-none-eabi-gcc "${common[@]}" "${arm[@]}" -c "$s" -o "$o"
    objs+=("$o")
done
arm-none-eabi-gcc "${arm[@]}" -T "$here/mps2_an386.ld" -nostartfiles --specs=nano.specs \
    --specs=rdimon.specs -Wl,--gc-sections -Wl,-Map="$out/firmware.map" -o "$out/firmware.elf" \
    "${objs[@]}"
arm-none-eabi-objdump -d "$out/firmware.elf" > "$out/firmware.dis"
# the runtime must not need libgcc's 64-bit division or shift helpers (slow on a Cortex-M)
if [ -f "$out/lbm.o" ] && arm-none-eabi-nm -u "$out/lbm.o" | grep -q '__aeabi_\(l\|ul\)'; then
    die "runtime/lbm.c calls a 64-bit helper: $(arm-none-eabi-nm -u "$out/lbm.o" | grep __aeabi_ | tr '\n' ' ')"
fi
cc "${common[@]}" -o "$out/host" "$here/bench.c" "$here/host.c" "${srcs[@]}" "$out/images.c"

# 4. run both
"$out/host" > "$out/host.txt" || die "the host build failed: $(tail -n 3 "$out/host.txt")"
set +e
timeout "${MCU_TIMEOUT:-1800}" qemu-system-arm -M mps2-an386 -nographic -monitor none \
    -semihosting -icount shift=0 -kernel "$out/firmware.elf" < /dev/null > "$out/qemu.txt" 2>&1
qrc=$?
set -e
[ "$qrc" -eq 0 ] || die "QEMU exited with status $qrc: $(tail -n 3 "$out/qemu.txt")"

# 5. compare every img line (prediction and scores)
grep '^img ' "$out/host.txt" > "$out/host.img"
grep '^img ' "$out/qemu.txt" > "$out/qemu.img" || true
[ "$(wc -l < "$out/host.img")" -eq "$n" ] || die "the host build printed $(wc -l < "$out/host.img") of $n results"
if ! cmp -s "$out/host.img" "$out/qemu.img"; then
    diff "$out/host.img" "$out/qemu.img" | head -n 10 >&2
    die "QEMU and the host disagree ($(diff "$out/host.img" "$out/qemu.img" | grep -c '^>') lines); see $out"
fi

# 6. figures
kv() { sed -n "s/^$1 .* $2=\([0-9]*\).*/\1/p" "$out/qemu.txt" | head -n 1; }
# sections of an ELF or object: size -A prints "name size addr"
sec_sum() { arm-none-eabi-size -A "$1" | awk -v re="$2" '$1 ~ re { s += $2 } END { print s + 0 }'; }
flash=$(sec_sum "$out/firmware.elf" '^\.(text|ARM\.exidx|data)$')
# code of the inference: what the linker kept (the map) of the backend's objects' text, rodata
# and data. The map lists " .section addr size file", the section name alone on its own line
# when it is long.
code=$(awk -v objs=" $backend_objs " '
    function hex(s,   v, i, c) { v = 0; s = tolower(substr(s, 3))
        for (i = 1; i <= length(s); i++) { c = index("0123456789abcdef", substr(s, i, 1)) - 1; v = v * 16 + c }
        return v }
    function add(sz, file,   b) { b = file; sub(/.*\//, "", b); sub(/\.o$/, "", b)
        if (sec ~ /^\.(text|rodata|data)/ && index(objs, " " b " ")) total += hex(sz) }
    /^Linker script and memory map/ { on = 1; next }
    !on { next }
    /^ \.[A-Za-z_]/ { sec = $1; if (NF >= 4 && $2 ~ /^0x/) add($3, $4); next }
    /^ +0x[0-9a-f]+ +0x[0-9a-f]+ / && NF == 3 { add($2, $3) }
    END { print total + 0 }' "$out/firmware.map")
model_bytes=$(kv lowbit-mcu model_bytes); arena_bytes=$(kv lowbit-mcu arena_bytes)
init_stack=$(kv lowbit-mcu init_stack_bytes)
stack=$(kv summary stack_bytes); ticks=$(kv summary ticks); nspt=$(kv summary ns_per_tick)
calib_ticks=$(kv calib ticks); calib_instr=$(kv calib instructions)
# the counter must measure the loop of known length to within one tick
calib_meas=$((calib_ticks * nspt))
[ $((calib_meas - calib_instr)) -le "$nspt" ] && [ $((calib_instr - calib_meas)) -le "$nspt" ] ||
    die "counter check failed: $calib_instr instructions measured as $calib_meas (is it qemu -icount shift=0 on mps2-an386?)"
instr=$(awk -v t="$ticks" -v k="$nspt" -v n="$n" 'BEGIN { printf "%.0f", t * k / n }')
acc=""
if [ -n "$labels" ]; then
    bytes "$labels" 8 "$n" > "$out/labels.txt"
    acc=$(awk '{ print $4 }' "$out/host.img" | paste -d' ' - "$out/labels.txt" |
          awk '$1 == $2 { c++ } END { printf "%.1f", 100 * c / NR }')
fi
echo "run.sh: $n images: QEMU (Cortex-M4) and host answers identical (predictions and scores)"
echo "run.sh: counter check: $calib_instr instructions measured as $calib_ticks ticks x $nspt ns"
echo "result images=$n identical=yes opt=$opt flash_bytes=$flash model_bytes=$model_bytes" \
     "code_bytes=$code arena_bytes=$arena_bytes stack_bytes=$stack init_stack_bytes=$init_stack" \
     "ram_bytes=$((arena_bytes + stack)) instructions=$instr calib=$calib_instr/$calib_meas" \
     "${acc:+accuracy=$acc }out=$out"
