/*
 * failalloc.c - see failalloc.h. The __wrap_X functions replace X for code linked
 * into a test binary (ld --wrap); __real_X is the allocator underneath.
 */
#include "failalloc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
int __real_vasprintf(char **out, const char *fmt, va_list ap);

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t k, size_t n);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
int __wrap_vasprintf(char **out, const char *fmt, va_list ap);

static atomic_bool armed;
static atomic_long calls, failed;
static long fail_at;
static bool fail_after;

void fa_arm(long n, bool persist)
{
    atomic_store(&armed, false);
    fail_at = n;
    fail_after = persist;
    atomic_store(&calls, 0);
    atomic_store(&failed, 0);
    atomic_store(&armed, true);
}

long fa_disarm(void)
{
    atomic_store(&armed, false);
    return atomic_load(&calls);
}

long fa_failed(void)
{
    return atomic_load(&failed);
}

/* Whether this allocation is to fail. */
static bool fail_now(void)
{
    if (!atomic_load_explicit(&armed, memory_order_relaxed))
        return false;
    long k = atomic_fetch_add(&calls, 1) + 1;
    if (fail_at <= 0 || k < fail_at || (k > fail_at && !fail_after))
        return false;
    atomic_fetch_add(&failed, 1);
    errno = ENOMEM;
    return true;
}

void *__wrap_malloc(size_t n)
{
    return fail_now() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t k, size_t n)
{
    return fail_now() ? NULL : __real_calloc(k, n);
}

void *__wrap_realloc(void *p, size_t n)
{
    return fail_now() ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
    return fail_now() ? NULL : __real_strdup(s);
}

char *__wrap_strndup(const char *s, size_t n)
{
    return fail_now() ? NULL : __real_strndup(s, n);
}

int __wrap_vasprintf(char **out, const char *fmt, va_list ap)
{
    if (fail_now())
        return -1;
    return __real_vasprintf(out, fmt, ap);
}

bool fa_env(void)
{
    const char *v = getenv("RW_FAILALLOC");
    return v && *v;
}

void fa_env_arm(void)
{
    const char *p = getenv("RW_FAILALLOC_PERSIST");
    fa_arm(atol(getenv("RW_FAILALLOC")), p && *p && strcmp(p, "0"));
}

void fa_env_report(void)
{
    long n = fa_disarm();
    fprintf(stderr, "failalloc: N=%ld calls=%ld failed=%ld\n", fail_at, n, fa_failed());
}
