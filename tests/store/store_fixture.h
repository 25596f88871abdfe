/*
 * store_fixture.h - one place that gives the store tests a real backend: a fresh
 * `mem:` store, a fresh LMDB directory, or a redis-server of its own on a free
 * loopback port (stopped at exit, and killed with the test if the test dies).
 */
#ifndef RW_STORE_FIXTURE_H
#define RW_STORE_FIXTURE_H

#include <stdbool.h>
#include <sys/types.h>

#include "store.h"

struct sfx {
    const char *backend; /* "mem", "lmdb" or "redis" */
    char *dir;           /* scratch directory */
    char url[600];       /* URL of the current fresh store */
    int n;               /* fresh stores handed out */
    int port;
    pid_t redis;
    bool persist; /* redis: append-only file, fsync always */
};

int sfx_start(struct sfx *f, const char *backend);
void sfx_stop(struct sfx *f);
/* A new empty store: fills f->url and opens it in *st. */
int sfx_fresh(struct sfx *f, struct store **st);
/* redis: start, stop (with signal) and restart the server on the same port. */
int sfx_redis_up(struct sfx *f);
void sfx_redis_down(struct sfx *f, int sig);
/* redis: waits until the server has dropped every connection but the caller's
 * `clients` (a killed client's last command may still be in flight). */
int sfx_settle(struct sfx *f, int clients);
/* Runs fn(arg) in a child process; returns its pid. */
pid_t sfx_fork(int (*fn)(void *), void *arg);
/* Waits for pid; returns its exit code, or 128+signal. */
int sfx_wait(pid_t pid);

#endif
