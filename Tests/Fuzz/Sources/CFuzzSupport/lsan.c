#include "CFuzzSupport.h"

// Weak, so a build without AddressSanitizer/LeakSanitizer (Scripts/fuzz --no-asan) links.
void __lsan_disable(void) __attribute__((weak));
void __lsan_enable(void) __attribute__((weak));

void lnp_fuzz_ignore_leaks_begin(void) {
    if (__lsan_disable) __lsan_disable();
}

void lnp_fuzz_ignore_leaks_end(void) {
    if (__lsan_enable) __lsan_enable();
}
