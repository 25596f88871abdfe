/*
 * store_redis.c - the `redis://[:PASSWORD@]HOST:PORT[/DB]` backend, for workers
 * on several hosts. The semantics run server-side in store_redis.lua (one
 * EVALSHA per batch, atomic); this file formats batches, pipelines blind ones
 * and reads the replies.
 *
 * A batch stays in the client's pending list until its reply is read. When the
 * connection breaks, the op returns STORE_EBACKEND; the next call reconnects and
 * resends every pending batch. Ops that the lost connection had applied are then
 * emulated (their records exist), so nothing is applied twice.
 */
#include "store_int.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store_redis_lua.h"

#define PIPE_MAX 32 /* batches in flight before a blind op waits for replies */

struct redis_st {
    char host[256];
    char pass[256];
    int port;
    int db;
};

struct pend {
    char *cmd;
    size_t len;
};

struct redis_cl {
    redisContext *ctx;
    char tag[32]; /* rw:{vN} */
    char sha[41];
    struct pend *p; /* pending batches, oldest first */
    size_t np, cp;
    size_t nsent; /* pending batches written on the current connection */
};

static int parse_url(struct redis_st *r, const char *rest, struct rw_err *e)
{
    const char *at = strchr(rest, '@'), *hp = rest;
    r->db = 0;
    if (at) {
        size_t pl = (size_t)(at - rest);
        if (rest[0] != ':' || pl - 1 >= sizeof(r->pass))
            return rw_errf(e, STORE_EURL, "redis URL: password part must be ':PASSWORD@'");
        memcpy(r->pass, rest + 1, pl - 1);
        r->pass[pl - 1] = 0;
        hp = at + 1;
    }
    const char *colon = strrchr(hp, ':');
    if (!colon || colon == hp || (size_t)(colon - hp) >= sizeof(r->host))
        return rw_errf(e, STORE_EURL, "redis URL '%s': expected HOST:PORT[/DB]", rest);
    memcpy(r->host, hp, (size_t)(colon - hp));
    r->host[colon - hp] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (port <= 0 || port > 65535 || (*end && *end != '/'))
        return rw_errf(e, STORE_EURL, "redis URL '%s': bad port", rest);
    r->port = (int)port;
    if (*end == '/') {
        long db = strtol(end + 1, &end, 10);
        if (db < 0 || db > 1000000 || *end)
            return rw_errf(e, STORE_EURL, "redis URL '%s': bad database number", rest);
        r->db = (int)db;
    }
    return STORE_OK;
}

static int redis_open(struct store *st, const char *rest, struct rw_err *e)
{
    struct redis_st *r = calloc(1, sizeof(*r));
    if (!r)
        return rw_errf(e, STORE_ENOMEM, "redis: out of memory");
    int rc = parse_url(r, rest, e);
    if (rc) {
        free(r);
        return rc;
    }
    st->impl = r;
    return STORE_OK;
}

static void redis_close(struct store *st)
{
    free(st->impl);
}

/* hiredis writes with write(2): a peer that went away must not kill the worker
 * with SIGPIPE, so the signal is blocked around I/O and a pending one dropped. */
struct nopipe {
    sigset_t old;
    bool was_pending;
};

static void nopipe_begin(struct nopipe *np)
{
    sigset_t set, pending;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigpending(&pending);
    np->was_pending = sigismember(&pending, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &np->old);
}

static void nopipe_end(struct nopipe *np)
{
    sigset_t set, pending;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigpending(&pending);
    if (!np->was_pending && sigismember(&pending, SIGPIPE)) {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &np->old, NULL);
}

static struct redis_st *rst(struct store_client *c)
{
    return c->st->impl;
}

static void drop_conn(struct redis_cl *r)
{
    if (r->ctx)
        redisFree(r->ctx);
    r->ctx = NULL;
    r->nsent = 0;
}

static int broken(struct store_client *c, const char *what)
{
    struct redis_cl *r = c->impl;
    struct redis_st *s = rst(c);
    int rc = store_errf(c, STORE_EBACKEND, "redis %s:%d: %s: %s", s->host, s->port, what,
                        r->ctx ? r->ctx->errstr : "not connected");
    drop_conn(r);
    return rc;
}

/* Runs one command now (connection setup, reads); the caller frees the reply. */
static int command(struct store_client *c, redisReply **out, const char *fmt, ...)
{
    struct redis_cl *r = c->impl;
    struct nopipe np;
    va_list ap;
    va_start(ap, fmt);
    nopipe_begin(&np);
    redisReply *rep = redisvCommand(r->ctx, fmt, ap);
    nopipe_end(&np);
    va_end(ap);
    if (!rep)
        return broken(c, "command");
    if (rep->type == REDIS_REPLY_ERROR) {
        int rc = store_errf(c, strncmp(rep->str, "OOM", 3) ? STORE_EBACKEND : STORE_EFULL,
                            "redis: %s", rep->str);
        freeReplyObject(rep);
        return rc;
    }
    *out = rep;
    return STORE_OK;
}

static int simple(struct store_client *c, const char *fmt, const char *arg)
{
    redisReply *rep;
    int rc = command(c, &rep, fmt, arg);
    if (rc == STORE_OK)
        freeReplyObject(rep);
    return rc;
}

static int setup_conn(struct store_client *c)
{
    struct redis_cl *r = c->impl;
    struct redis_st *s = rst(c);
    char db[16];
    redisReply *rep;
    int rc;
    snprintf(db, sizeof(db), "%d", s->db);
    if ((s->pass[0] && (rc = simple(c, "AUTH %s", s->pass))) ||
        (s->db && (rc = simple(c, "SELECT %s", db))))
        return rc;
    if ((rc = command(c, &rep, "SCRIPT LOAD %s", store_redis_lua)))
        return rc;
    if (rep->type == REDIS_REPLY_STRING && rep->len == 40)
        memcpy(r->sha, rep->str, 41);
    else
        rc = store_errf(c, STORE_EBACKEND, "redis: SCRIPT LOAD gave no SHA");
    freeReplyObject(rep);
    return rc;
}

/* Writes pending batches not yet on this connection. */
static int push_out(struct store_client *c)
{
    struct redis_cl *r = c->impl;
    struct nopipe np;
    int done = 0, rc = STORE_OK;
    for (; r->nsent < r->np; r->nsent++)
        if (redisAppendFormattedCommand(r->ctx, r->p[r->nsent].cmd, r->p[r->nsent].len))
            return broken(c, "append");
    nopipe_begin(&np);
    while (!done && rc == STORE_OK)
        if (redisBufferWrite(r->ctx, &done) != REDIS_OK)
            rc = -1;
    nopipe_end(&np);
    return rc ? broken(c, "write") : STORE_OK;
}

static int ensure_conn(struct store_client *c)
{
    struct redis_cl *r = c->impl;
    struct redis_st *s = rst(c);
    if (r->ctx)
        return STORE_OK;
    struct timeval cto = {1, 0}, rto = {5, 0};
    r->ctx = redisConnectWithTimeout(s->host, s->port, cto);
    if (!r->ctx)
        return store_errf(c, STORE_ENOMEM, "redis: out of memory");
    if (r->ctx->err)
        return broken(c, "connect");
    redisSetTimeout(r->ctx, rto);
    int rc = setup_conn(c);
    if (rc) {
        if (r->ctx)
            redisFree(r->ctx);
        r->ctx = NULL;
        return rc;
    }
    r->nsent = 0;
    return push_out(c);
}

static int store_code(struct store_client *c, const redisReply *rep)
{
    if (rep->type == REDIS_REPLY_ERROR)
        return store_errf(c, strncmp(rep->str, "OOM", 3) ? STORE_EBACKEND : STORE_EFULL,
                          "redis: %s", rep->str);
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER)
        return store_errf(c, STORE_ECORRUPT, "redis: unexpected script reply type %d", rep->type);
    long long code = rep->element[0]->integer;
    if (code == 0)
        return STORE_OK;
    const redisReply *m = rep->elements > 1 ? rep->element[1] : NULL;
    return store_errf(c, (int)code, "redis: %s",
                      m && m->type == REDIS_REPLY_STRING ? m->str : "refused");
}

static int parse_res(struct store_client *c, const redisReply *rep, struct store_res *res)
{
    if (rep->elements != 5 || rep->element[1]->type != REDIS_REPLY_INTEGER ||
        rep->element[2]->type != REDIS_REPLY_INTEGER ||
        rep->element[3]->type != REDIS_REPLY_INTEGER || rep->element[4]->type != REDIS_REPLY_STRING)
        return store_errf(c, STORE_ECORRUPT, "redis: malformed batch reply");
    res->found = rep->element[1]->integer != 0;
    res->swapped = rep->element[2]->integer != 0;
    res->i = rep->element[3]->integer;
    if (store_res_set(res, rep->element[4]->str, rep->element[4]->len))
        return store_errf(c, STORE_ENOMEM, "redis: out of memory");
    return STORE_OK;
}

static void pend_pop(struct redis_cl *r)
{
    free(r->p[0].cmd);
    memmove(r->p, r->p + 1, (r->np - 1) * sizeof(*r->p));
    r->np--;
    r->nsent--;
}

/* Reads replies until at most keep batches are pending; the first refusal wins,
 * res gets the last reply. A reply that says NOSCRIPT means the server lost the
 * script (restart, SCRIPT FLUSH): the connection is redone and the batch resent. */
static int drain(struct store_client *c, size_t keep, struct store_res *res)
{
    struct redis_cl *r = c->impl;
    int first = STORE_OK;
    while (r->np > keep) {
        redisReply *rep = NULL;
        struct nopipe np;
        nopipe_begin(&np);
        int grc = redisGetReply(r->ctx, (void **)&rep);
        nopipe_end(&np);
        if (grc != REDIS_OK || !rep)
            return broken(c, "reply");
        if (rep->type == REDIS_REPLY_ERROR) {
            /* The script did not run (LOADING, NOSCRIPT, OOM, READONLY...): keep the
             * batch, drop the connection so that the next call resends it. */
            int rc = store_code(c, rep);
            freeReplyObject(rep);
            drop_conn(r);
            return rc;
        }
        int rc = store_code(c, rep);
        if (rc == STORE_OK && res)
            rc = parse_res(c, rep, res);
        freeReplyObject(rep);
        pend_pop(r);
        if (rc && first == STORE_OK)
            first = rc;
    }
    if (first)
        c->err.code = first;
    return first;
}

/* Connects if needed and drains; one reconnect-and-resend when the link broke. */
static int settle(struct store_client *c, size_t keep, struct store_res *res)
{
    int rc = ensure_conn(c);
    if (rc == STORE_OK)
        rc = push_out(c);
    if (rc == STORE_OK)
        rc = drain(c, keep, res);
    if (rc != STORE_EBACKEND || ((struct redis_cl *)c->impl)->ctx)
        return rc;
    if ((rc = ensure_conn(c)) == STORE_OK)
        rc = drain(c, keep, res);
    return rc;
}

struct argv {
    const char **v;
    size_t *l;
    int n;
    char (*num)[24];
    int nn;
};

static void arg(struct argv *a, const void *p, size_t len)
{
    a->v[a->n] = p;
    a->l[a->n++] = len;
}

static void arg_num(struct argv *a, long long x)
{
    int len = snprintf(a->num[a->nn], 24, "%lld", x);
    arg(a, a->num[a->nn++], (size_t)len);
}

static void arg_op(struct argv *a, const struct store_batch *b, const struct store_op *o, char *key)
{
    size_t kl = (size_t)sprintf(key, "d:%u:%u:", o->scope, o->object);
    if (o->klen)
        memcpy(key + kl, store_op_key(b, o), o->klen);
    arg_num(a, o->kind);
    arg_num(a, o->has_id | (o->has_a << 1));
    arg_num(a, (long long)o->clock);
    arg_num(a, o->seq);
    arg_num(a, o->scope);
    arg(a, key, kl + o->klen);
    arg(a, b->bytes + o->aoff, o->alen);
    arg(a, b->bytes + o->boff, o->blen);
    arg_num(a, o->kind == SOP_MOVE ? o->to : o->delta);
}

/* Formats EVALSHA for the batch and appends it to the pending list. */
static int pend_batch(struct store_client *c, const struct store_batch *b, uint64_t wm)
{
    struct redis_cl *r = c->impl;
    size_t max = 8 + 9 * b->n;
    struct argv a = {calloc(max, sizeof(char *)), calloc(max, sizeof(size_t)), 0,
                     calloc(5 + 6 * b->n, 24), 0};
    char *keys = malloc(b->n * (STORE_KEY_MAX + 24) + 1);
    int rc = STORE_ENOMEM;
    if (r->np == r->cp) {
        size_t nc = r->cp ? r->cp * 2 : 16;
        struct pend *np = realloc(r->p, nc * sizeof(*np));
        if (np)
            r->p = np, r->cp = nc;
    }
    if (a.v && a.l && a.num && keys && r->np < r->cp) {
        arg(&a, "EVALSHA", 7);
        arg(&a, r->sha, 40);
        arg(&a, "1", 1);
        arg(&a, r->tag, strlen(r->tag));
        arg(&a, "b", 1);
        arg_num(&a, c->slot);
        arg_num(&a, (long long)c->epoch);
        arg_num(&a, (long long)wm);
        for (size_t i = 0; i < b->n; i++)
            arg_op(&a, b, &b->ops[i], keys + i * (STORE_KEY_MAX + 24));
        char *cmd = NULL;
        long long len = redisFormatCommandArgv(&cmd, a.n, a.v, a.l);
        if (len > 0) {
            r->p[r->np++] = (struct pend){cmd, (size_t)len};
            rc = STORE_OK;
        }
    }
    free(a.v);
    free(a.l);
    free(a.num);
    free(keys);
    return rc ? store_errf(c, rc, "redis: out of memory formatting a batch") : STORE_OK;
}

static int redis_apply(struct store_client *c, const struct store_batch *b, uint64_t wm, bool sync,
                       struct store_res *res)
{
    struct redis_cl *r = c->impl;
    int rc = pend_batch(c, b, wm);
    if (rc)
        return rc;
    if (sync)
        return settle(c, 0, res);
    if ((rc = ensure_conn(c)) || (rc = push_out(c)))
        return rc;
    return r->np > PIPE_MAX ? drain(c, PIPE_MAX / 2, NULL) : STORE_OK;
}

static int redis_wait(struct store_client *c)
{
    return settle(c, 0, NULL);
}

static int slot_epoch(struct store_client *c, uint64_t *epoch)
{
    struct redis_cl *r = c->impl;
    redisReply *rep;
    char key[64];
    snprintf(key, sizeof(key), "%s:slots", r->tag);
    int rc = command(c, &rep, "HGET %s %u", key, (unsigned)c->slot);
    if (rc)
        return rc;
    *epoch = rep->type == REDIS_REPLY_STRING ? strtoull(rep->str, NULL, 10) : 0;
    freeReplyObject(rep);
    return STORE_OK;
}

static int redis_client_open(struct store_client *c)
{
    struct redis_cl *r = calloc(1, sizeof(*r));
    if (!r)
        return store_errf(c, STORE_ENOMEM, "redis: out of memory");
    c->impl = r;
    snprintf(r->tag, sizeof(r->tag), "rw:{v%u}", c->vertex);
    int rc = ensure_conn(c);
    return rc ? rc : slot_epoch(c, &c->epoch);
}

static void redis_client_close(struct store_client *c)
{
    struct redis_cl *r = c->impl;
    if (r->ctx)
        redisFree(r->ctx);
    for (size_t i = 0; i < r->np; i++)
        free(r->p[i].cmd);
    free(r->p);
    free(r);
}

/* Runs an admin mode of the script after the pending batches; returns the reply. */
static int admin(struct store_client *c, redisReply **out, const char *mode, unsigned long long a,
                 unsigned long long b)
{
    struct redis_cl *r = c->impl;
    int rc = settle(c, 0, NULL);
    if (rc)
        return rc;
    rc = command(c, out, "EVALSHA %s 1 %s %s %llu %llu", r->sha, r->tag, mode, a, b);
    if (rc == STORE_OK && (rc = store_code(c, *out)))
        freeReplyObject(*out);
    return rc;
}

static int redis_claim(struct store_client *c)
{
    redisReply *rep;
    int rc = admin(c, &rep, "c", c->slot, 0);
    if (rc)
        return rc;
    if (rep->elements == 2 && rep->element[1]->type == REDIS_REPLY_INTEGER)
        c->epoch = (uint64_t)rep->element[1]->integer;
    else
        rc = store_errf(c, STORE_ECORRUPT, "redis: malformed claim reply");
    freeReplyObject(rep);
    return rc;
}

static int redis_transfer(struct store_client *c, uint16_t from, uint16_t to)
{
    redisReply *rep;
    int rc = admin(c, &rep, "t", from, to);
    if (rc == STORE_OK)
        freeReplyObject(rep);
    return rc;
}

static int redis_trim(struct store_client *c, uint64_t g)
{
    redisReply *rep;
    int rc = admin(c, &rep, "r", g, 0);
    if (rc == STORE_OK)
        freeReplyObject(rep);
    return rc;
}

static int redis_watermark(struct store_client *c, uint16_t slot, uint64_t *w)
{
    struct redis_cl *r = c->impl;
    redisReply *rep;
    char key[64];
    int rc = settle(c, 0, NULL);
    if (rc)
        return rc;
    snprintf(key, sizeof(key), "%s:w", r->tag);
    if ((rc = command(c, &rep, "HGET %s %u", key, (unsigned)slot)))
        return rc;
    *w = rep->type == REDIS_REPLY_STRING ? strtoull(rep->str, NULL, 10) : 0;
    freeReplyObject(rep);
    return STORE_OK;
}

const struct store_backend store_be_redis = {
    redis_open, redis_close, redis_client_open, redis_client_close, redis_apply,
    redis_wait, redis_claim, redis_transfer,    redis_watermark,    redis_trim,
};
