/*
 * rw_error.c - error records, the lookups generated from rw_error.h's table, and
 * the monotonic clock helper shared by all parts.
 */
#include "rw_common.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

int rw_errf(struct rw_err *e, int code, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
        va_end(ap);
        e->code = code;
    }
    return code;
}

int rw_err_prefix(struct rw_err *e, const char *fmt, ...)
{
    if (!e)
        return RW_OK;
    char prefix[RW_ERR_MSG_MAX], old[RW_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof(old));
    size_t n = strnlen(prefix, sizeof(e->msg) - 1);
    memcpy(e->msg, prefix, n);
    size_t rest = strnlen(old, sizeof(e->msg) - 1 - n);
    memcpy(e->msg + n, old, rest);
    e->msg[n + rest] = '\0';
    return e->code;
}

#define RW_ERROR_CASE(name, value, exit, msg)                                                      \
    case name:                                                                                     \
        return msg;
const char *rw_strerror(int code)
{
    static _Thread_local char unknown[40];
    switch (code) {
        RW_ERROR_MAP(RW_ERROR_CASE)
    }
    snprintf(unknown, sizeof(unknown), "unknown error %d", code);
    return unknown;
}
#undef RW_ERROR_CASE

#define RW_ERROR_CASE(name, value, exit, msg)                                                      \
    case name:                                                                                     \
        return #name;
const char *rw_err_name(int code)
{
    switch (code) {
        RW_ERROR_MAP(RW_ERROR_CASE)
    }
    return NULL;
}
#undef RW_ERROR_CASE

#define RW_ERROR_CASE(name, value, exit, msg)                                                      \
    case name:                                                                                     \
        return exit;
int rw_exit_code(int code)
{
    switch (code) {
        RW_ERROR_MAP(RW_ERROR_CASE)
    }
    return 1;
}
#undef RW_ERROR_CASE

uint64_t rw_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
