/*
 * store_fixture.c - see store_fixture.h.
 */
#include "store_fixture.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static int free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0)
        return -1;
    if (bind(s, (struct sockaddr *)&a, sizeof(a)) || getsockname(s, (struct sockaddr *)&a, &al)) {
        close(s);
        return -1;
    }
    close(s);
    return ntohs(a.sin_port);
}

static bool port_open(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int s = socket(AF_INET, SOCK_STREAM, 0);
    bool ok = s >= 0 && connect(s, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (s >= 0)
        close(s);
    return ok;
}

static void nap_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int sfx_redis_up(struct sfx *f)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", f->port);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int null = open("/dev/null", 1);
        if (null >= 0)
            dup2(null, 1), dup2(null, 2);
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--dir",
               f->dir, "--save", "", "--appendonly", f->persist ? "yes" : "no", "--appendfsync",
               "always", "--daemonize", "no", (char *)NULL);
        _exit(127);
    }
    f->redis = pid;
    for (int i = 0; i < 500; i++) {
        /* Accepting connections is not enough: while it loads its append-only file
         * the server answers LOADING. */
        if (port_open(f->port) &&
            tu_sh(NULL, "redis-cli -p %d ping 2>/dev/null | grep -q PONG", f->port) == 0)
            return 0;
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            f->redis = 0;
            return -1;
        }
        nap_ms(10);
    }
    return -1;
}

void sfx_redis_down(struct sfx *f, int sig)
{
    if (f->redis <= 0)
        return;
    kill(f->redis, sig);
    waitpid(f->redis, NULL, 0);
    f->redis = 0;
}

int sfx_settle(struct sfx *f, int clients)
{
    for (int i = 0; f->redis > 0 && i < 500; i++) {
        if (tu_sh(NULL, "redis-cli -p %d info clients | grep -q '^connected_clients:%d\\s*$'",
                  f->port, clients + 1) == 0)
            return 0;
        nap_ms(10);
    }
    return f->redis > 0 ? -1 : 0;
}

int sfx_start(struct sfx *f, const char *backend)
{
    memset(f, 0, sizeof(*f));
    f->backend = backend;
    f->dir = tu_mkdtemp("store");
    if (!f->dir)
        return -1;
    if (strcmp(backend, "redis"))
        return 0;
    f->port = free_port();
    return f->port > 0 ? sfx_redis_up(f) : -1;
}

void sfx_stop(struct sfx *f)
{
    sfx_redis_down(f, SIGTERM);
    tu_rmrf(f->dir);
    free(f->dir);
    f->dir = NULL;
}

static int redis_flushall(struct sfx *f)
{
    return tu_sh(NULL, "redis-cli -p %d flushall >/dev/null 2>&1", f->port);
}

int sfx_fresh(struct sfx *f, struct store **st)
{
    struct rw_err e = {0};
    f->n++;
    if (!strcmp(f->backend, "mem"))
        snprintf(f->url, sizeof(f->url), "mem:");
    else if (!strcmp(f->backend, "lmdb"))
        snprintf(f->url, sizeof(f->url), "lmdb:%s/db%d", f->dir, f->n);
    else {
        snprintf(f->url, sizeof(f->url), "redis://127.0.0.1:%d", f->port);
        if (redis_flushall(f))
            return -1;
    }
    int rc = store_open(f->url, st, &e);
    if (rc)
        fprintf(stderr, "sfx_fresh %s: %s\n", f->url, e.msg);
    return rc;
}

pid_t sfx_fork(int (*fn)(void *), void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0)
        _exit(fn(arg));
    return pid;
}

int sfx_wait(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
