# Warning, optimisation and sanitizer flags shared by every target.
# Never -ffast-math or -Ofast: fake quantization depends on exact IEEE rounding
# (nearbyintf, ties to even) and on isnan/isinf working.
add_compile_options(-Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes
                    -Wmissing-prototypes -Wvla -fno-fast-math)
if(CMAKE_BUILD_TYPE STREQUAL "RelWithDebInfo" OR CMAKE_BUILD_TYPE STREQUAL "Release")
    add_compile_options(-O3)
endif()
if(LB_WERROR)
    add_compile_options(-Werror)
endif()
if(LB_NATIVE)
    add_compile_options(-march=native)
endif()
if(LB_SANITIZE)
    add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
    add_link_options(-fsanitize=address,undefined)
endif()
if(LB_FUZZ)
    # Everything is instrumented for libFuzzer's coverage and checked by ASan and UBSan; only
    # the fuzz_* programs link libFuzzer's main (tests/fuzz/CMakeLists.txt).
    if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
        message(FATAL_ERROR "LB_FUZZ needs Clang (this is ${CMAKE_C_COMPILER_ID}): "
                            "cmake -DCMAKE_C_COMPILER=clang -DLB_FUZZ=ON, or tools/fuzz.sh")
    endif()
    add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
                        -fno-sanitize-recover=undefined)
    add_link_options(-fsanitize=address,undefined)
endif()
