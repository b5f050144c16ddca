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
