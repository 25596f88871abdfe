/*
 * rw_error.c - error records and the monotonic clock helper shared by all parts.
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

const char *rw_strerror(int code)
{
    switch (code) {
    case RW_OK:
        return "ok";
    case RW_EINVAL:
        return "invalid argument";
    case RW_EIO:
        return "I/O error";
    case RW_ENOSPC:
        return "out of space";
    case RW_ECORRUPT:
        return "data corrupted";
    case RW_ENOMEM:
        return "out of memory";
    case RW_ENOENT:
        return "not found";
    case RW_EDPDK:
        return "DPDK error";
    case RW_EINPUT:
        return "damaged input";
    case RW_EINTR:
        return "interrupted";
    case RW_ESTALLED:
        return "no answer in time";
    default:
        return "unknown error";
    }
}

uint64_t rw_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
