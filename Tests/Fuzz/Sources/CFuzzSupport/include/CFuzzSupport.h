#ifndef LNP_CFUZZSUPPORT_H
#define LNP_CFUZZSUPPORT_H

#include <stddef.h>
#include <stdint.h>

// libFuzzer's public driver entry point (compiler-rt FuzzerInterface.h, LLVM >= 11).
// It is linked in by `-sanitize=fuzzer`; declaring it here lets a Swift `main` hand
// control to libFuzzer instead of relying on libFuzzer's own `main` (see Package.swift).
int LLVMFuzzerRunDriver(int *argc, char ***argv,
                        int (*UserCb)(const uint8_t *Data, size_t Size));

// Brackets the construction of long-lived harness fixtures, whose allocations
// LeakSanitizer must not report (see Fixtures.swift). No-ops without LeakSanitizer.
void lnp_fuzz_ignore_leaks_begin(void);
void lnp_fuzz_ignore_leaks_end(void);

#endif
