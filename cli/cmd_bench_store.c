/*
 * cmd_bench_store.c - `rewind bench store`: state store throughput as ratios to
 * a plain baseline measured in the same run (the machines are shared and noisy,
 * design.md: Measuring): plain LMDB puts for the LMDB backend, plain pipelined Redis
 * INCRBY for the Redis backend. It starts its own redis-server on a free
 * loopback port and stops it at the end. With --json the figures go to stdout as
 * one object (docs/benchmarks.md) instead of the text table.
 */
#include "cmd_bench_store.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <hiredis/hiredis.h>
#include <lmdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rw_common.h"
#include "store.h"

struct bopts {
    uint64_t ops;
    unsigned batch;
    unsigned keys;
    bool lmdb, redis, json;
    char dir[512];
};

struct bctx {
    const struct bopts *o;
    pid_t redis;
    int port;
    char url[640];
};

static double rate(uint64_t n, uint64_t t0)
{
    uint64_t dt = rw_now_ns() - t0;
    return dt ? (double)n * 1e9 / (double)dt : 0;
}

static int fail(const char *what, const char *msg)
{
    fprintf(stderr, "rewind: bench store: %s: %s\n", what, msg);
    return -1;
}

/* Baseline: plain LMDB puts of 8-byte counters, `batch` puts per write txn, with
 * the store's environment flags. */
static int base_lmdb(const struct bopts *o, double *out)
{
    char path[600];
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    snprintf(path, sizeof(path), "%s/plain", o->dir);
    mkdir(path, 0775);
    if (mdb_env_create(&env) || mdb_env_set_mapsize(env, 4ul << 30) ||
        mdb_env_open(env, path, MDB_NOSYNC | MDB_WRITEMAP, 0664))
        return fail("lmdb", "cannot open the baseline environment");
    uint64_t t0 = rw_now_ns(), done = 0;
    int rc = 0;
    while (done < o->ops && rc == 0) {
        rc = mdb_txn_begin(env, NULL, 0, &txn) || mdb_dbi_open(txn, NULL, 0, &dbi);
        for (unsigned i = 0; i < o->batch && done < o->ops && rc == 0; i++, done++) {
            uint8_t k[8], v[8];
            rw_put_be64(k, done % o->keys);
            rw_put_be64(v, done);
            MDB_val kv = {8, k}, vv = {8, v};
            rc = mdb_put(txn, dbi, &kv, &vv, 0);
        }
        rc = rc ? (mdb_txn_abort(txn), rc) : mdb_txn_commit(txn);
    }
    *out = rate(done, t0);
    mdb_env_close(env);
    return rc ? fail("lmdb", "baseline put failed") : 0;
}

static int free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    int s = socket(AF_INET, SOCK_STREAM, 0), port = -1;
    if (s >= 0 && !bind(s, (struct sockaddr *)&a, sizeof(a)) &&
        !getsockname(s, (struct sockaddr *)&a, &al))
        port = ntohs(a.sin_port);
    if (s >= 0)
        close(s);
    return port;
}

static redisContext *redis_wait_up(int port)
{
    struct timeval tv = {1, 0};
    for (int i = 0; i < 500; i++) {
        redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
        if (c && !c->err)
            return c;
        if (c)
            redisFree(c);
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static int redis_start(struct bctx *b)
{
    char port[16];
    b->port = free_port();
    snprintf(port, sizeof(port), "%d", b->port);
    if (b->port < 0 || (b->redis = fork()) < 0)
        return fail("redis", "cannot pick a port or fork");
    if (b->redis == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--dir",
               b->o->dir, "--save", "", "--appendonly", "no", "--logfile", "/dev/null",
               (char *)NULL);
        _exit(127);
    }
    redisContext *c = redis_wait_up(b->port);
    if (!c)
        return fail("redis", "redis-server did not come up (is it installed?)");
    redisFree(c);
    snprintf(b->url, sizeof(b->url), "redis://127.0.0.1:%d", b->port);
    return 0;
}

static void redis_stop(struct bctx *b)
{
    if (b->redis > 0) {
        kill(b->redis, SIGTERM);
        waitpid(b->redis, NULL, 0);
        b->redis = 0;
    }
}

/* Baseline: INCRBY pipelined `batch` at a time over one connection. */
static int base_incrby(struct bctx *b, double *out)
{
    const struct bopts *o = b->o;
    redisContext *c = redis_wait_up(b->port);
    if (!c)
        return fail("redis", "cannot connect for the baseline");
    uint64_t t0 = rw_now_ns(), done = 0;
    int rc = 0;
    while (done < o->ops && rc == 0) {
        unsigned n = 0;
        for (; n < o->batch && done + n < o->ops; n++)
            redisAppendCommand(c, "INCRBY plain:%llu 1",
                               (unsigned long long)((done + n) % o->keys));
        for (unsigned i = 0; i < n && rc == 0; i++) {
            redisReply *r = NULL;
            rc = redisGetReply(c, (void **)&r) != REDIS_OK || r->type != REDIS_REPLY_INTEGER;
            if (r)
                freeReplyObject(r);
        }
        done += n;
    }
    *out = rate(done, t0);
    redisFree(c);
    return rc ? fail("redis", "baseline INCRBY failed") : 0;
}

struct srates {
    double incr, pop, emul;
};

static struct store_key bkey(uint64_t i, char *buf)
{
    struct store_key k = {STORE_SHARED, 1, buf,
                          (size_t)sprintf(buf, "c%llu", (unsigned long long)i)};
    return k;
}

static int store_fail(struct store_client *c, const char *what)
{
    return fail(what, store_client_errmsg(c));
}

/* incr (blind, batched), the same ops again (emulated), push then pop (sync). */
static int run_store(const struct bopts *o, const char *url, struct srates *r)
{
    struct store *st;
    struct store_client *c;
    struct rw_err e = {0};
    char kb[32];
    if (store_open(url, &st, &e))
        return fail(url, e.msg);
    if (store_client_open(st, 1, 0, &c, &e)) {
        store_close(st);
        return fail(url, e.msg);
    }
    store_client_set_batch(c, o->batch);
    int rc = 0;
    uint64_t t0 = rw_now_ns();
    for (int pass = 0; pass < 2 && rc == 0; pass++) {
        t0 = rw_now_ns();
        for (uint64_t i = 0; i < o->ops && rc == 0; i++) {
            struct store_key k = bkey(i % o->keys, kb);
            rc = store_incr(c, &(struct store_opid){i + 1, 0}, &k, 1, NULL);
        }
        rc = rc ? rc : store_flush(c);
        *(pass ? &r->emul : &r->incr) = rate(o->ops, t0);
    }
    struct store_key l = {STORE_SHARED, 2, "pool", 4};
    uint64_t pops = o->ops / 4, base = o->ops + 1;
    for (uint64_t i = 0; i < pops && rc == 0; i++)
        rc = store_push(c, &(struct store_opid){base + i, 0}, &l, &i, sizeof(i));
    rc = rc ? rc : store_flush(c);
    t0 = rw_now_ns();
    for (uint64_t i = 0; i < pops && rc == 0; i++) {
        uint64_t v;
        size_t len;
        bool found;
        rc =
            store_pop(c, &(struct store_opid){base + pops + i, 0}, &l, &v, sizeof(v), &len, &found);
        rc = rc ? rc : (found && v == i) ? 0 : STORE_ECORRUPT;
    }
    r->pop = rate(pops, t0);
    if (rc)
        store_fail(c, url);
    store_client_close(c);
    store_close(st);
    return rc ? -1 : 0;
}

static void row(const char *be, const char *what, double r, double lmdb_put, double incrby)
{
    printf("%-6s %-22s %11.0f ops/s  %5.2fx lmdb-put", be, what, r, r / lmdb_put);
    if (incrby > 0)
        printf("  %5.2fx redis-incrby", r / incrby);
    printf("\n");
}

/* The figures of one run: baselines, then per backend incr, pop, emulated. */
struct bresults {
    double lmdb_put, incrby; /* incrby 0: not measured */
    struct srates lmdb, redis;
    bool has_lmdb, has_redis;
};

static void print_rows(const char *be, const struct srates *r, const struct bresults *res)
{
    row(be, "incr (blind, batched)", r->incr, res->lmdb_put, res->incrby);
    row(be, "pop (sync)", r->pop, res->lmdb_put, res->incrby);
    row(be, "emulated repeats", r->emul, res->lmdb_put, res->incrby);
}

/* A ratio to a baseline that may not have been measured: a number or null. */
static void json_ratio(const char *key, double r, double base)
{
    if (base > 0)
        printf(", \"%s\": %.4g", key, r / base);
    else
        printf(", \"%s\": null", key);
}

static void json_rows(const char *be, const struct srates *r, const struct bresults *res,
                      bool *first)
{
    const char *op[] = {"incr", "pop", "emulated"};
    const double v[] = {r->incr, r->pop, r->emul};
    for (int i = 0; i < 3; i++) {
        printf("%s{\"backend\": \"%s\", \"op\": \"%s\", \"ops_per_s\": %.0f", *first ? "" : ", ",
               be, op[i], v[i]);
        json_ratio("vs_lmdb_put", v[i], res->lmdb_put);
        json_ratio("vs_redis_incrby", v[i], res->incrby);
        printf("}");
        *first = false;
    }
}

/* One object: {"ops", "batch", "keys", "baseline": {"lmdb_put", "redis_incrby"},
 * "results": [{"backend", "op", "ops_per_s", "vs_lmdb_put", "vs_redis_incrby"}]}. */
static void print_json(const struct bopts *o, const struct bresults *res)
{
    printf("{\"ops\": %llu, \"batch\": %u, \"keys\": %u, \"baseline\": {\"lmdb_put\": %.0f",
           (unsigned long long)o->ops, o->batch, o->keys, res->lmdb_put);
    if (res->incrby > 0)
        printf(", \"redis_incrby\": %.0f}, \"results\": [", res->incrby);
    else
        printf(", \"redis_incrby\": null}, \"results\": [");
    bool first = true;
    if (res->has_lmdb)
        json_rows("lmdb", &res->lmdb, res, &first);
    if (res->has_redis)
        json_rows("redis", &res->redis, res, &first);
    printf("]}\n");
}

static void usage(FILE *f)
{
    fprintf(f, "usage: rewind bench store [--ops N] [--batch N] [--keys N] "
               "[--backend lmdb|redis|all] [--dir DIR]\n"
               "                          [--json]\n\n"
               "Store throughput for incr (blind, batched), pop (sync) and emulated repeats,\n"
               "as ratios to plain LMDB puts and plain pipelined Redis INCRBY measured in the\n"
               "same run. Starts its own redis-server on a free 127.0.0.1 port.\n"
               "  --ops N       ops per measurement (default 1000000)\n"
               "  --batch N     ops per batch / pipeline depth (default 1000)\n"
               "  --keys N      distinct counters (default 1024)\n"
               "  --backend B   lmdb, redis or all (default all)\n"
               "  --dir DIR     scratch directory (default: a new one under $TMPDIR)\n"
               "  --json        print one object instead of the table: {ops, batch, keys,\n"
               "                baseline {lmdb_put, redis_incrby}, results: [{backend, op,\n"
               "                ops_per_s, vs_lmdb_put, vs_redis_incrby}]}; op is incr, pop\n"
               "                or emulated; a baseline not measured is null\n");
}

static int parse(int argc, char **argv, struct bopts *o)
{
    static const struct option lo[] = {
        {"ops", 1, 0, 'n'}, {"batch", 1, 0, 'b'}, {"keys", 1, 0, 'k'}, {"backend", 1, 0, 'B'},
        {"dir", 1, 0, 'd'}, {"json", 0, 0, 'j'},  {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int ch;
    *o = (struct bopts){1000000, 1000, 1024, true, true, false, ""};
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        char *end = NULL;
        unsigned long long v = optarg ? strtoull(optarg, &end, 10) : 0;
        bool num_ok = optarg && end && !*end && v > 0;
        if (ch == 'h')
            return 1;
        if (ch == 'j') {
            o->json = true;
            continue;
        }
        if (ch == 'n' && num_ok)
            o->ops = v;
        else if (ch == 'b' && num_ok && v <= 65536)
            o->batch = (unsigned)v;
        else if (ch == 'k' && num_ok && v <= 1u << 24)
            o->keys = (unsigned)v;
        else if (ch == 'B' && strcmp(optarg, "all"))
            o->lmdb = !strcmp(optarg, "lmdb"), o->redis = !strcmp(optarg, "redis");
        else if (ch == 'd' && strlen(optarg) < sizeof(o->dir))
            snprintf(o->dir, sizeof(o->dir), "%s", optarg);
        else if (ch != 'B')
            return -1;
    }
    return optind == argc && (o->lmdb || o->redis) ? 0 : -1;
}

static int scratch(struct bopts *o, bool *made)
{
    *made = false;
    if (o->dir[0])
        return mkdir(o->dir, 0775) && access(o->dir, W_OK) ? -1 : 0;
    const char *t = getenv("TMPDIR");
    snprintf(o->dir, sizeof(o->dir), "%s/rw-bench-store-XXXXXX", t ? t : "/tmp");
    *made = mkdtemp(o->dir) != NULL;
    return *made ? 0 : -1;
}

int cmd_bench_store(int argc, char **argv)
{
    struct bopts o;
    int p = parse(argc, argv, &o);
    if (p) {
        usage(p > 0 ? stdout : stderr);
        return p > 0 ? 0 : 2;
    }
    bool made;
    if (scratch(&o, &made))
        return fail(o.dir, "cannot create the scratch directory"), 1;
    struct bctx b = {.o = &o};
    struct bresults res = {0};
    char url[640];
    if (!o.json)
        printf("ops %llu, batch %u, keys %u\n", (unsigned long long)o.ops, o.batch, o.keys);
    int rc = base_lmdb(&o, &res.lmdb_put);
    if (rc == 0 && !o.json)
        printf("lmdb   plain puts (batched txns) %11.0f ops/s  (baseline)\n", res.lmdb_put);
    if (rc == 0 && o.redis && (rc = redis_start(&b)) == 0 &&
        (rc = base_incrby(&b, &res.incrby)) == 0 && !o.json)
        printf("redis  plain pipelined INCRBY    %11.0f ops/s  (baseline)\n", res.incrby);
    snprintf(url, sizeof(url), "lmdb:%s/store?map=4096", o.dir);
    if (rc == 0 && o.lmdb && (rc = run_store(&o, url, &res.lmdb)) == 0) {
        res.has_lmdb = true;
        if (!o.json)
            print_rows("lmdb", &res.lmdb, &res);
    }
    if (rc == 0 && o.redis && (rc = run_store(&o, b.url, &res.redis)) == 0) {
        res.has_redis = true;
        if (!o.json)
            print_rows("redis", &res.redis, &res);
    }
    if (rc == 0 && o.json)
        print_json(&o, &res);
    redis_stop(&b);
    if (made) {
        char cmd[700];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", o.dir);
        if (system(cmd) != 0)
            fail(o.dir, "cannot remove the scratch directory");
    }
    return rc ? 1 : 0;
}
