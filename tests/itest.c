/*
 * itest.c - see itest.h.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include "itest.h"

#include "log.h"

#include <lmdb.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int it_ingest(const char *scratch, const char *trace, const char *log, const char *extra)
{
    char out[4096];
    snprintf(out, sizeof(out), "%s/ingest", scratch);
    return tu_sh(out, "'%s' log ingest --log '%s' --trace '%s' -q %s", tu_bin(), log, trace,
                 extra ? extra : "");
}

int it_export(const char *scratch, const char *log, const char *out, const char *extra)
{
    char o[4096];
    snprintf(o, sizeof(o), "%s/replay", scratch);
    return tu_sh(o, "'%s' replay '%s' --to-pcap '%s' %s", tu_bin(), log, out, extra ? extra : "");
}

long it_diff(const struct tu_pcap *a, size_t ao, const struct tu_pcap *b, size_t bo, size_t n,
             int check_ts)
{
    for (size_t i = 0; i < n; i++) {
        const struct tu_pkt *x = &a->pkts[ao + i], *y = &b->pkts[bo + i];
        if ((check_ts && x->ts_ns != y->ts_ns) || x->caplen != y->caplen || x->len != y->len ||
            memcmp(x->data, y->data, x->caplen)) {
            fprintf(stderr, "packet %zu differs (ts %llu/%llu caplen %u/%u len %u/%u)\n", i,
                    (unsigned long long)x->ts_ns, (unsigned long long)y->ts_ns, x->caplen,
                    y->caplen, x->len, y->len);
            return (long)i;
        }
    }
    return -1;
}

int it_set_flow_hash(const char *log, uint32_t version)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/manifest.mdb", log);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi meta;
    if (mdb_env_create(&env))
        return -1;
    mdb_env_set_maxdbs(env, 4);
    mdb_env_set_mapsize(env, 16u << 20); /* as the writer's */
    int rc = mdb_env_open(env, path, MDB_NOSUBDIR, 0644);
    if (!rc && !(rc = mdb_txn_begin(env, NULL, 0, &txn))) {
        uint8_t vb[4] = {(uint8_t)(version >> 24), (uint8_t)(version >> 16),
                         (uint8_t)(version >> 8), (uint8_t)version};
        MDB_val k = {9, "flow_hash"}, v = {4, vb};
        rc = mdb_dbi_open(txn, "meta", 0, &meta);
        if (!rc)
            rc = version ? mdb_put(txn, meta, &k, &v, 0) : mdb_del(txn, meta, &k, NULL);
        if (rc)
            mdb_txn_abort(txn);
        else
            rc = mdb_txn_commit(txn);
    }
    mdb_env_close(env);
    return rc ? -1 : 0;
}

int it_file_has(const char *path, const char *needle)
{
    char *s = tu_slurp(path, NULL);
    int n = 0;
    for (char *p = s; p && (p = strstr(p, needle)); p += strlen(needle))
        n++;
    free(s);
    return n;
}

static int collect(void *ctx, const struct log_rec *r)
{
    struct it_outs *o = ctx;
    if (o->n == o->cap) {
        o->cap = o->cap ? o->cap * 2 : 1024;
        o->p = realloc(o->p, o->cap * sizeof(*o->p));
    }
    struct it_pkt *x = &o->p[o->n++];
    x->clock = r->meta.clock;
    x->sub = r->meta.sub;
    x->len = r->cap_len;
    x->data = malloc(r->cap_len ? r->cap_len : 1);
    memcpy(x->data, r->data, r->cap_len);
    return 0;
}

void it_read_output(const char *run_dir, struct it_outs *o)
{
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s/output", run_dir);
    memset(o, 0, sizeof(*o));
    struct log_reader *r;
    struct rw_err e;
    CU_ASSERT_EQUAL_FATAL(log_reader_open(dir, &r, &e), 0);
    struct log_query q;
    log_query_all(&q);
    struct log_scan_cbs cb = {.visit = collect, .ctx = o};
    CU_ASSERT_EQUAL(log_scan(r, &q, &cb, NULL, &e), 0);
    log_reader_close(r);
}

void it_free_outs(struct it_outs *o)
{
    for (size_t i = 0; i < o->n; i++)
        free(o->p[i].data);
    free(o->p);
    memset(o, 0, sizeof(*o));
}

bool it_same_outs(const struct it_outs *a, const struct it_outs *b)
{
    if (a->n != b->n)
        return fprintf(stderr, "  outputs differ: %zu vs %zu packets\n", a->n, b->n), false;
    for (size_t i = 0; i < a->n; i++)
        if (a->p[i].clock != b->p[i].clock || a->p[i].sub != b->p[i].sub ||
            a->p[i].len != b->p[i].len || memcmp(a->p[i].data, b->p[i].data, a->p[i].len))
            return fprintf(stderr, "  outputs differ at packet %zu (clock %llu)\n", i,
                           (unsigned long long)a->p[i].clock),
                   false;
    return true;
}

int it_count_workers(const char *tag)
{
    char cmd[4400];
    /* [w]: the pattern must not match the shell running pgrep */
    snprintf(cmd, sizeof(cmd), "pgrep -f 'rewind [w]orker.*%s' | wc -l", tag);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1)
            n = -1;
        pclose(p);
    }
    return n;
}

/* A free TCP port on 127.0.0.1 (bound once, released for redis-server to take). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof(a);
    int port = -1;
    if (fd >= 0 && !bind(fd, (struct sockaddr *)&a, sizeof(a)) &&
        !getsockname(fd, (struct sockaddr *)&a, &l))
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

pid_t it_redis_start(const char *dir, int *port)
{
    *port = free_port();
    if (*port <= 0)
        return 0;
    pid_t rs = fork();
    if (rs == 0) {
        char p[16];
        snprintf(p, sizeof(p), "%d", *port);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", dir, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        if (!tu_sh(NULL, "redis-cli -p %d ping >/dev/null 2>&1", *port))
            return rs;
        usleep(10000);
    }
    kill(rs, SIGTERM);
    waitpid(rs, NULL, 0);
    return 0;
}

pid_t it_spawn_sh(const char *cmd)
{
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

void it_progress(const char *err, long *in, long *out)
{
    char *txt = tu_slurp(err, NULL);
    *in = *out = -1;
    for (char *p = txt; p && (p = strstr(p, "run: ")); p++) {
        char *q = strstr(p, " packets in, ");
        if (!q)
            break;
        *in = strtol(p + 5, NULL, 10);
        *out = strtol(q + 13, NULL, 10);
    }
    free(txt);
}

bool it_wait_progress(const char *err, long min_in, long min_out)
{
    for (int i = 0; i < 120000; i++) {
        long in, out;
        it_progress(err, &in, &out);
        if (in >= min_in && out >= min_out)
            return true;
        usleep(1000);
    }
    return false;
}
