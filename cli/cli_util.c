/*
 * cli_util.c - parsing and output helpers shared by the subcommands.
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int cli_exit_code(int rw_code)
{
    return rw_exit_code(rw_code);
}

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("rewind: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

bool cli_tty(void)
{
    return isatty(STDERR_FILENO);
}

int cli_parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!s || !*s || *s == '-')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

int cli_parse_duration(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!s || !*s || *s == '-')
        return -1;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0)
        return -1;
    static const struct {
        const char *u;
        double ns;
    } units[] = {{"", 1e9}, {"s", 1e9},  {"ms", 1e6},   {"us", 1e3},
                 {"ns", 1}, {"m", 60e9}, {"h", 3600e9}, {"d", 86400e9}};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (!strcmp(end, units[i].u)) {
            *out = (uint64_t)llround(v * units[i].ns);
            return 0;
        }
    return -1;
}

/* Digits after a decimal point as nanoseconds, exactly (a double would lose
 * about half a microsecond at today's epoch values). */
static const char *parse_frac_ns(const char *p, uint64_t *frac)
{
    uint64_t scale = 100000000ull;
    *frac = 0;
    for (; *p >= '0' && *p <= '9'; p++, scale /= 10)
        *frac += (uint64_t)(*p - '0') * scale;
    return p;
}

/* A UTC offset after a time: Z, or +HH:MM / -HH:MM (RFC 3339), or +HHMM / +HH
 * (ISO 8601's other forms, which date(1) and Suricata print). *secs east of UTC. */
static const char *parse_offset(const char *p, long *secs)
{
    *secs = 0;
    if (*p == 'Z' || *p == 'z')
        return p + 1;
    if (*p != '+' && *p != '-')
        return p; /* none: UTC */
    int sign = *p++ == '-' ? -1 : 1;
    int d[4], n = 0;
    while (n < 4 && ((*p >= '0' && *p <= '9') || (n == 2 && *p == ':'))) {
        if (*p != ':')
            d[n++] = *p - '0';
        p++;
    }
    if (n != 2 && n != 4)
        return NULL;
    long h = d[0] * 10 + d[1], m = n == 4 ? d[2] * 10 + d[3] : 0;
    if (h > 23 || m > 59)
        return NULL;
    *secs = sign * (h * 3600 + m * 60);
    return p;
}

int cli_parse_time(const char *s, uint64_t *out_ns)
{
    char *end;
    errno = 0;
    if (*s >= '0' && *s <= '9') {
        unsigned long long sec = strtoull(s, &end, 10);
        uint64_t frac = 0;
        const char *p = end;
        if (*p == '.')
            p = parse_frac_ns(p + 1, &frac);
        if (!errno && *p == '\0' && sec < 18000000000ull) {
            *out_ns = (uint64_t)sec * 1000000000ull + frac;
            return 0;
        }
    }
    /* RFC 3339 (T or a space between date and time, seconds optional), or a
     * date alone: its midnight, UTC. strptime checks each field's range. */
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *p = strptime(s, "%Y-%m-%d", &tm);
    if (!p || (*p && *p != 'T' && *p != 't' && *p != ' '))
        return -1;
    uint64_t frac = 0;
    long off = 0;
    if (*p) {
        if (!(p = strptime(p + 1, "%H:%M", &tm)))
            return -1;
        if (*p == ':' && !(p = strptime(p + 1, "%S", &tm)))
            return -1;
        if (*p == '.' && (p[1] < '0' || p[1] > '9'))
            return -1;
        if (*p == '.')
            p = parse_frac_ns(p + 1, &frac);
        if (!(p = parse_offset(p, &off)))
            return -1;
    }
    if (*p || tm.tm_sec > 59) /* strptime takes a leap second; the log's clock has none */
        return -1;
    int mday = tm.tm_mday, mon = tm.tm_mon;
    time_t t = timegm(&tm); /* normalises: 2026-02-30 would be March 2nd */
    if (t < 0 || (int64_t)t - off < 0 || tm.tm_mday != mday || tm.tm_mon != mon)
        return -1;
    *out_ns = (uint64_t)((int64_t)t - off) * 1000000000ull + frac;
    return 0;
}

const char *cli_fmt_time(uint64_t ns, char *buf, unsigned len)
{
    time_t t = (time_t)(ns / 1000000000ull);
    struct tm tm;
    gmtime_r(&t, &tm);
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%s.%09lluZ", base, (unsigned long long)(ns % 1000000000ull));
    return buf;
}

int cli_isolated(int (*fn)(void *), void *arg, int *sig)
{
    *sig = 0;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return fn(arg); /* cannot isolate: run in-process */
    if (pid == 0) {
        int rc = fn(arg);
        fflush(NULL);
        _exit(rc);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return EXIT_FAIL;
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    int s = WTERMSIG(st);
    if (s == SIGINT || s == SIGTERM)
        return 128 + s;
    *sig = s;
    return -1;
}

int cli_guarded(int (*fn)(void *), void *arg, const char *what)
{
    int sig;
    int rc = cli_isolated(fn, arg, &sig);
    if (!sig)
        return rc;
    cli_error("%s stopped by %s while reading stored data: the log's LMDB pages are damaged "
              "in a way LMDB cannot detect; run `rewind log verify` to locate it",
              what, strsignal(sig));
    return EXIT_DAMAGE;
}

void cli_print_json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            printf("\\u%04x", (unsigned char)*s);
        else
            putchar(*s);
    }
    putchar('"');
}
