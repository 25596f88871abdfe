/*
 * failalloc_exempt.h - included first (-include) by the tests' own sources, never
 * by rewind's: the test code's allocations go straight to the real allocator,
 * neither counted nor failed by failalloc, so that an injected failure is always
 * one that rewind's code has to handle (a test that cannot make its scratch
 * directory name says nothing about rewind).
 */
#ifndef RW_FAILALLOC_EXEMPT_H
#define RW_FAILALLOC_EXEMPT_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);

#define malloc(n)     __real_malloc(n)
#define calloc(k, n)  __real_calloc(k, n)
#define realloc(p, n) __real_realloc(p, n)
#define strdup(s)     __real_strdup(s)
#define strndup(s, n) __real_strndup(s, n)

#endif
