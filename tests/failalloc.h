/*
 * failalloc.h - allocation-failure injection for the in-process tests (SQLite's
 * habit). Every test binary is linked with -Wl,--wrap for malloc, calloc,
 * realloc, strdup, strndup and vasprintf, so each call that rewind's code (and
 * the test's own code) makes to them goes through here first; calls made inside
 * shared libraries (libc's fopen, LMDB, hiredis, libuv) are not seen. The real
 * allocator underneath is whatever the build has (ASan's in Debug), so a leak or
 * a bad access on an error path is still reported.
 *
 * Nothing fails until armed. tu_main arms around each test function when
 * RW_FAILALLOC=N is in the environment: the Nth allocation inside the test body
 * fails (N = 0: none, just count), and with RW_FAILALLOC_PERSIST=1 every one
 * after it fails too. At the end of each test it prints one line on stderr:
 *   failalloc: N=<n> calls=<allocations seen> failed=<how many failed>
 * which tests/faults.sh reads to know how far to go.
 */
#ifndef RW_FAILALLOC_H
#define RW_FAILALLOC_H

#include <stdbool.h>

/* Arms: the nth allocation from now fails (n >= 1; 0 counts only), and every one
 * after it when persist. */
void fa_arm(long n, bool persist);
/* Disarms; returns the allocations seen since fa_arm. */
long fa_disarm(void);
/* Allocations failed since fa_arm. */
long fa_failed(void);

/* The environment's request (RW_FAILALLOC, RW_FAILALLOC_PERSIST): whether there
 * is one; fa_env_arm arms as it says, fa_env_report disarms and prints the line. */
bool fa_env(void);
void fa_env_arm(void);
void fa_env_report(void);

#endif
