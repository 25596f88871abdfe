/*
 * store_redis.c - the `redis://[:PASSWORD@]HOST:PORT[/DB][?timeout=MS]` backend, for workers
 * on several hosts. The semantics run server-side in store_redis.lua (one
 * EVALSHA per batch, atomic); this file formats batches, pipelines blind ones
 * and reads the replies.
 *
 * A batch stays in the client's pending list until its reply is read. When the
 * connection breaks, the op returns STORE_EBACKEND; the next call reconnects and
 * resends every pending batch. Ops that the lost connection had applied are then
 * emulated (their records exist), so nothing is applied twice.
 *
 * A server that accepts but does not answer (stopped, swapping, a script that
 * runs for ever) is not a broken link: every connect and read has a timeout
 * (?timeout=MS, default 1 s, below the coordinator's 2 s heartbeat budget so a
 * worker waiting on the store says so before it is taken for hung), and running
 * out of it is STORE_ESTALLED, which is not retried: the caller stops with a
 * message instead of reconnecting to a server that will not answer either.
 */
#include "store_int.h"

#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store_redis_lua.h"

#include <uv.h>

#define PIPE_MAX 32   /* batches in flight before a blind op waits for replies */
#define PEND_MAX 4096 /* batches kept for resend while the server is unreachable */

#define TIMEOUT_MS_DEFAULT 1000

struct redis_st {
    char host[256];
    char pass[256];
    int port;
    int db;
    int timeout_ms; /* for every connect and every reply */
};

struct pend {
    char *cmd;
    size_t len;
    uint64_t id;
};

/* A store_flush_async caller waiting for every batch up to `upto`. */
struct flushw {
    uint64_t upto;
    store_flush_cb cb;
    void *arg;
};

struct redis_cl {
    struct store_client *c;
    redisContext *ctx;
    char tag[32]; /* rw:{vN} */
    char sha[41];
    struct pend *p; /* pending batches, oldest first */
    size_t np, cp;
    size_t nsent;    /* pending batches written on the current sync connection */
    uint64_t nextid; /* id of the next batch */
    /* uv mode: blind batches go over an async connection on the caller's loop. */
    uv_loop_t *loop;
    redisAsyncContext *ac;
    uint64_t async_sent; /* highest batch id written on ac */
    int async_err;       /* first refusal seen in an async reply, not yet reported */
    struct flushw *fw;
    size_t nfw, cfw;
};

static int parse_url(struct redis_st *r, const char *rest, struct rw_err *e)
{
    const char *at = strchr(rest, '@'), *hp = rest;
    /* Messages show the URL without its password. */
    char shown[300];
    snprintf(shown, sizeof(shown), "%s%.250s", at ? ":***@" : "", at ? at + 1 : rest);
    r->db = 0;
    r->timeout_ms = TIMEOUT_MS_DEFAULT;
    const char *q = strchr(at ? at : rest, '?');
    if (q) {
        char *end;
        long ms = strncmp(q, "?timeout=", 9) ? 0 : strtol(q + 9, &end, 10);
        if (ms < 1 || ms > 600000 || *end)
            return rw_errf(e, STORE_EURL,
                           "redis URL '%s': option not understood (?timeout=MS, 1..600000)", shown);
        r->timeout_ms = (int)ms;
    }
    if (strchr(rest, ','))
        return rw_errf(e, STORE_EURL, "redis URL '%s': one server only (no cluster routing)",
                       shown);
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
        return rw_errf(e, STORE_EURL, "redis URL '%s': expected HOST:PORT[/DB]", shown);
    memcpy(r->host, hp, (size_t)(colon - hp));
    r->host[colon - hp] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (port <= 0 || port > 65535 || (*end && *end != '/' && *end != '?'))
        return rw_errf(e, STORE_EURL, "redis URL '%s': bad port", shown);
    r->port = (int)port;
    if (*end == '/') {
        long db = strtol(end + 1, &end, 10);
        if (db < 0 || db > 1000000 || (*end && *end != '?'))
            return rw_errf(e, STORE_EURL, "redis URL '%s': bad database number", shown);
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

/* hiredis says a read or connect ran out of its timeout only in errstr (an I/O
 * error whose text is EAGAIN's or ETIMEDOUT's). */
static bool timed_out(const redisContext *ctx)
{
    return ctx && ctx->err == REDIS_ERR_IO &&
           (!strcmp(ctx->errstr, strerror(EAGAIN)) || !strcmp(ctx->errstr, strerror(ETIMEDOUT)));
}

static int broken(struct store_client *c, const char *what)
{
    struct redis_cl *r = c->impl;
    struct redis_st *s = rst(c);
    int rc;
    if (timed_out(r->ctx))
        rc = store_errf(c, STORE_ESTALLED,
                        "redis %s:%d did not answer within %d ms (%s; a stalled or overloaded "
                        "server; ?timeout=MS in the store URL sets the wait)",
                        s->host, s->port, s->timeout_ms, what);
    else
        rc = store_errf(c, STORE_EBACKEND, "redis %s:%d: %s: %s", s->host, s->port, what,
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
    struct timeval to = {s->timeout_ms / 1000, (s->timeout_ms % 1000) * 1000};
    r->ctx = redisConnectWithTimeout(s->host, s->port, to);
    if (!r->ctx)
        return store_errf(c, STORE_ENOMEM, "redis: out of memory");
    if (r->ctx->err)
        return broken(c, "connect");
    redisSetTimeout(r->ctx, to);
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
    if (rep->elements != 7 || rep->element[1]->type != REDIS_REPLY_INTEGER ||
        rep->element[2]->type != REDIS_REPLY_INTEGER ||
        rep->element[3]->type != REDIS_REPLY_INTEGER ||
        rep->element[4]->type != REDIS_REPLY_STRING ||
        rep->element[5]->type != REDIS_REPLY_STRING || rep->element[6]->type != REDIS_REPLY_INTEGER)
        return store_errf(c, STORE_ECORRUPT, "redis: malformed batch reply");
    res->found = rep->element[1]->integer != 0;
    res->swapped = rep->element[2]->integer != 0;
    res->i = rep->element[3]->integer;
    res->stamp = strtoull(rep->element[5]->str, NULL, 10);
    res->recorded = rep->element[6]->integer != 0;
    if (store_res_set(res, rep->element[4]->str, rep->element[4]->len))
        return store_errf(c, STORE_ENOMEM, "redis: out of memory");
    return STORE_OK;
}

static void fire_waiters(struct redis_cl *r, int rc);

static void pend_pop(struct redis_cl *r)
{
    free(r->p[0].cmd);
    memmove(r->p, r->p + 1, (r->np - 1) * sizeof(*r->p));
    r->np--;
    if (r->nsent)
        r->nsent--;
    fire_waiters(r, STORE_OK);
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
        /* A batch with more behind it is not the one a sync op waits for: its
         * refusal is no answer to that op. */
        if (rc && first == STORE_OK && r->np && (rc == STORE_EOWNER || rc == STORE_ETYPE)) {
            char why[RW_ERR_MSG_MAX];
            snprintf(why, sizeof(why), "%s", c->err.msg);
            rc = store_errf(c, STORE_EREFUSED, "an earlier batch was refused (%.400s)", why);
        }
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
    arg_num(a, o->has_id | (o->has_a << 1) | (o->owned << 2));
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
            r->p[r->np++] = (struct pend){cmd, (size_t)len, ++r->nextid};
            rc = STORE_OK;
        }
    }
    free(a.v);
    free(a.l);
    free(a.num);
    free(keys);
    return rc ? store_errf(c, rc, "redis: out of memory formatting a batch") : STORE_OK;
}

/* ---- uv mode ---------------------------------------------------------------
 * Blind batches are written on an async connection driven by the caller's
 * libuv loop and never wait. Sync ops and store_flush stay on the blocking
 * connection and first resend every batch not yet acknowledged: the store's
 * emulation makes the second copy harmless, and the client's order holds. */

/* Our own libuv adapter for hiredis. The one in hiredis 0.14 returns early when
 * libuv reports an error on the poll handle; libuv has stopped the handle by
 * then, so a connection reset by a dying server is never noticed and waits
 * forever. Here an error event is handed to hiredis as a read, which makes it
 * see the error and disconnect. */
struct uvev {
    redisAsyncContext *ac;
    uv_poll_t h;
    int events;
};

static void uvev_poll(uv_poll_t *h, int status, int events)
{
    struct uvev *p = h->data;
    int ev = status ? p->events | UV_READABLE : events;
    if (p->ac && (ev & UV_READABLE))
        redisAsyncHandleRead(p->ac);
    if (p->ac && (ev & UV_WRITABLE))
        redisAsyncHandleWrite(p->ac);
}

static void uvev_set(struct uvev *p, int events)
{
    p->events = events;
    if (events)
        uv_poll_start(&p->h, events, uvev_poll);
    else
        uv_poll_stop(&p->h);
}

static void uvev_add_read(void *d)
{
    struct uvev *p = d;
    uvev_set(p, p->events | UV_READABLE);
}

static void uvev_del_read(void *d)
{
    struct uvev *p = d;
    uvev_set(p, p->events & ~UV_READABLE);
}

static void uvev_add_write(void *d)
{
    struct uvev *p = d;
    uvev_set(p, p->events | UV_WRITABLE);
}

static void uvev_del_write(void *d)
{
    struct uvev *p = d;
    uvev_set(p, p->events & ~UV_WRITABLE);
}

static void uvev_closed(uv_handle_t *h)
{
    free(h->data);
}

static void uvev_cleanup(void *d)
{
    struct uvev *p = d;
    p->ac = NULL;
    uv_close((uv_handle_t *)&p->h, uvev_closed);
}

static int uvev_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    struct uvev *p = calloc(1, sizeof(*p));
    if (!p)
        return REDIS_ERR;
    if (uv_poll_init_socket(loop, &p->h, ac->c.fd)) {
        free(p);
        return REDIS_ERR;
    }
    p->h.data = p;
    p->ac = ac;
    ac->ev.addRead = uvev_add_read;
    ac->ev.delRead = uvev_del_read;
    ac->ev.addWrite = uvev_add_write;
    ac->ev.delWrite = uvev_del_write;
    ac->ev.cleanup = uvev_cleanup;
    ac->ev.data = p;
    return REDIS_OK;
}

static void fire_waiters(struct redis_cl *r, int rc)
{
    uint64_t acked = r->np ? r->p[0].id - 1 : r->nextid;
    size_t keep = 0;
    for (size_t i = 0; i < r->nfw; i++) {
        struct flushw w = r->fw[i];
        if (rc == STORE_OK && w.upto > acked) {
            r->fw[keep++] = w;
            continue;
        }
        int wrc = rc ? rc : r->async_err;
        r->async_err = 0;
        w.cb(w.arg, wrc);
    }
    r->nfw = keep;
}

static void ack_upto(struct redis_cl *r, uint64_t id)
{
    while (r->np && r->p[0].id <= id)
        pend_pop(r);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    struct redis_cl *r = ac->data;
    redisReply *rep = reply;
    if (!r || !rep)
        return; /* connection gone: the batch stays pending */
    if (rep->type == REDIS_REPLY_ERROR) {
        /* Not run (LOADING, NOSCRIPT...): keep it, resend on a new connection. */
        store_code(r->c, rep);
        redisAsyncDisconnect(ac);
        return;
    }
    int rc = store_code(r->c, rep);
    if (rc && !r->async_err)
        r->async_err = rc;
    ack_upto(r, (uint64_t)(uintptr_t)priv);
}

static void async_lost(struct redis_cl *r, const char *why, const char *detail)
{
    struct redis_st *s = rst(r->c);
    r->ac = NULL;
    r->async_sent = 0;
    store_errf(r->c, STORE_EBACKEND, "redis %s:%d: async %s: %s", s->host, s->port, why,
               detail ? detail : "");
    fire_waiters(r, STORE_EBACKEND);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct redis_cl *r = ac->data;
    if (r && status != REDIS_OK)
        async_lost(r, "connect", ac->errstr);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct redis_cl *r = ac->data;
    (void)status;
    if (r)
        async_lost(r, "connection lost", ac->errstr);
}

/* Writes pending batches not yet on the async connection. */
static int async_push(struct store_client *c)
{
    struct redis_cl *r = c->impl;
    for (size_t i = 0; i < r->np; i++) {
        struct pend *p = &r->p[i];
        if (p->id <= r->async_sent)
            continue;
        if (redisAsyncFormattedCommand(r->ac, on_reply, (void *)(uintptr_t)p->id, p->cmd, p->len) !=
            REDIS_OK)
            return store_errf(c, STORE_EBACKEND, "redis: async write failed");
        r->async_sent = p->id;
    }
    return STORE_OK;
}

static int ensure_async(struct store_client *c)
{
    struct redis_cl *r = c->impl;
    struct redis_st *s = rst(c);
    if (r->ac)
        return STORE_OK;
    redisAsyncContext *ac = redisAsyncConnect(s->host, s->port);
    if (!ac || ac->err) {
        int rc = store_errf(c, STORE_EBACKEND, "redis %s:%d: async connect: %s", s->host, s->port,
                            ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        return rc;
    }
    ac->data = r;
    if (uvev_attach(ac, r->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        return store_errf(c, STORE_EBACKEND, "redis: cannot attach to the libuv loop");
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    r->ac = ac;
    r->async_sent = 0;
    if (s->pass[0])
        redisAsyncCommand(ac, NULL, NULL, "AUTH %s", s->pass);
    if (s->db)
        redisAsyncCommand(ac, NULL, NULL, "SELECT %d", s->db);
    redisAsyncCommand(ac, NULL, NULL, "SCRIPT LOAD %s", store_redis_lua);
    return async_push(c);
}

static int redis_uv(struct store_client *c, void *loop)
{
    struct redis_cl *r = c->impl;
    if (r->loop)
        return store_errf(c, STORE_EINVAL, "client already on a libuv loop");
    r->loop = loop;
    return ensure_async(c);
}

static int async_apply(struct store_client *c)
{
    struct redis_cl *r = c->impl;
    int rc = r->async_err;
    r->async_err = 0;
    if (rc)
        return rc;
    if ((rc = ensure_async(c)))
        return rc;
    return async_push(c);
}

static int redis_flush_async(struct store_client *c, store_flush_cb cb, void *arg)
{
    struct redis_cl *r = c->impl;
    if (!r->loop)
        return store_errf(c, STORE_EINVAL, "store_flush_async needs store_client_uv first");
    int rc = async_apply(c);
    if (rc)
        return rc;
    if (r->np == 0) {
        cb(arg, STORE_OK);
        return STORE_OK;
    }
    if (r->nfw == r->cfw) {
        size_t nc = r->cfw ? r->cfw * 2 : 8;
        struct flushw *nw = realloc(r->fw, nc * sizeof(*nw));
        if (!nw)
            return store_errf(c, STORE_ENOMEM, "redis: out of memory");
        r->fw = nw;
        r->cfw = nc;
    }
    r->fw[r->nfw++] = (struct flushw){r->p[r->np - 1].id, cb, arg};
    return STORE_OK;
}

static void async_close(struct redis_cl *r)
{
    if (r->ac) {
        r->ac->data = NULL;
        redisAsyncFree(r->ac);
        r->ac = NULL;
    }
    store_errf(r->c, STORE_EBACKEND, "redis: client closed");
    fire_waiters(r, STORE_EBACKEND);
    free(r->fw);
}

static int redis_apply(struct store_client *c, const struct store_batch *b, uint64_t wm, bool sync,
                       struct store_res *res)
{
    struct redis_cl *r = c->impl;
    if (r->np >= PEND_MAX)
        return store_errf(c, STORE_EBACKEND,
                          "redis: %zu batches wait for the server; batch dropped", r->np);
    int rc = pend_batch(c, b, wm);
    if (rc)
        return rc;
    if (sync)
        return settle(c, 0, res);
    if (r->loop)
        return async_apply(c);
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
    r->c = c;
    snprintf(r->tag, sizeof(r->tag), "rw:{v%u}", c->vertex);
    int rc = ensure_conn(c);
    return rc ? rc : slot_epoch(c, &c->epoch);
}

static void redis_client_close(struct store_client *c)
{
    struct redis_cl *r = c->impl;
    async_close(r);
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

struct since_rec {
    uint64_t clock;
    uint32_t seq;
    const redisReply *const *f; /* key, type, owner, value */
};

static int by_op(const void *a, const void *b)
{
    const struct since_rec *x = a, *y = b;
    if (x->clock != y->clock)
        return x->clock < y->clock ? -1 : 1;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

/* The script returns the records of one snapshot (a script is atomic) in hash
 * order: they are sorted here into op order, which the overlay relies on. */
static int redis_since(struct store_client *c, uint64_t w, store_pre_fn fn, void *arg)
{
    redisReply *rep;
    int rc = admin(c, &rep, "s", w, c->slot);
    if (rc)
        return rc;
    size_t n = (rep->elements - 1) / 6;
    struct since_rec *v = calloc(n ? n : 1, sizeof(*v));
    if (!v) {
        freeReplyObject(rep);
        return store_errf(c, STORE_ENOMEM, "redis: out of memory");
    }
    for (size_t i = 0; i < n && !rc; i++) {
        const redisReply *const *f = (const redisReply *const *)rep->element + 1 + i * 6;
        for (int j = 0; j < 6 && !rc; j++)
            if (f[j]->type != REDIS_REPLY_STRING)
                rc = store_errf(c, STORE_ECORRUPT, "redis: malformed since reply");
        v[i] = (struct since_rec){strtoull(f[0]->str, NULL, 10),
                                  (uint32_t)strtoul(f[1]->str, NULL, 10), f + 2};
    }
    if (n)
        qsort(v, n, sizeof(*v), by_op);
    for (size_t i = 0; i < n && !rc; i++) {
        const redisReply *const *f = v[i].f;
        unsigned scope, object;
        int used = 0;
        if (sscanf(f[0]->str, "d:%u:%u:%n", &scope, &object, &used) != 2 || !used ||
            (size_t)used > f[0]->len) {
            rc = store_errf(c, STORE_ECORRUPT, "redis: object key '%s'", f[0]->str);
            break;
        }
        char t = f[1]->str[0];
        struct store_pre p = {.clock = v[i].clock,
                              .seq = v[i].seq,
                              .scope = (uint8_t)scope,
                              .object = (uint16_t)object,
                              .key = (const uint8_t *)f[0]->str + used,
                              .klen = f[0]->len - (size_t)used,
                              .type = (uint8_t)(t == '-' ? 0 : t),
                              .owner = (uint16_t)strtoul(f[2]->str, NULL, 10)};
        if (t == 'i')
            p.i = strtoll(f[3]->str, NULL, 10);
        else if (t == 's')
            p.val = (const uint8_t *)f[3]->str, p.len = f[3]->len;
        rc = fn(arg, &p);
    }
    free(v);
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

#define RUN_KEY "rw:run"

/* Finds (or, with clear, deletes) every key of rewind's in the database. */
static int scan_state(struct store_client *c, bool clear, long long *n)
{
    char cursor[32] = "0";
    *n = 0;
    do {
        redisReply *rep;
        int rc = command(c, &rep, "SCAN %s MATCH rw:* COUNT 1000", cursor);
        if (rc)
            return rc;
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
            rep->element[0]->type != REDIS_REPLY_STRING ||
            rep->element[1]->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(rep);
            return store_errf(c, STORE_EBACKEND, "redis: malformed SCAN reply");
        }
        snprintf(cursor, sizeof(cursor), "%s", rep->element[0]->str);
        const redisReply *keys = rep->element[1];
        *n += (long long)keys->elements;
        for (size_t i = 0; clear && i < keys->elements && !rc; i++) {
            redisReply *d;
            if (!(rc = command(c, &d, "UNLINK %b", keys->element[i]->str,
                               (size_t)keys->element[i]->len)))
                freeReplyObject(d);
        }
        freeReplyObject(rep);
        if (rc)
            return rc;
    } while (strcmp(cursor, "0") && (clear || !*n));
    return STORE_OK;
}

static int redis_bind_run(struct store_client *c, const char *run, bool force)
{
    const struct redis_st *s = rst(c);
    redisReply *rep;
    long long n = 0;
    char who[256] = "written by an earlier rewind";
    int rc = command(c, &rep, "GET %s", RUN_KEY);
    if (rc)
        return rc;
    if (rep->type == REDIS_REPLY_STRING)
        snprintf(who, sizeof(who), "%.*s", (int)rep->len, rep->str);
    bool marked = rep->type == REDIS_REPLY_STRING;
    freeReplyObject(rep);
    if (!marked && (rc = scan_state(c, false, &n)))
        return rc;
    if ((marked || n) && !force)
        return store_errf(c, STORE_EINUSE,
                          "redis://%s:%d/%d holds the state of another run (%s); runs must not "
                          "mix: use another database (redis://HOST:PORT/N), clear its rw:* keys, "
                          "or --force to clear them",
                          s->host, s->port, s->db, who);
    if ((marked || n) && (rc = scan_state(c, true, &n)))
        return rc;
    if ((rc = command(c, &rep, "SET %s %s", RUN_KEY, run)))
        return rc;
    freeReplyObject(rep);
    return STORE_OK;
}

/* One object hash (rw:{vN}:d:SCOPE:OBJECT:KEY, fields t, o, v) and, for a list,
 * its elements (rw:{vN}:ld:...), as store_scan shows them. */
static int scan_object(struct store_client *c, const char *k, size_t kl, size_t tl,
                       store_scan_fn fn, void *arg)
{
    unsigned scope, object;
    int used = 0;
    if (kl < tl + 3 || sscanf(k + tl + 3, "%u:%u:%n", &scope, &object, &used) != 2 || !used ||
        tl + 3 + (size_t)used > kl)
        return store_errf(c, STORE_ECORRUPT, "redis: object key '%.*s'", (int)kl, k);
    redisReply *h;
    int rc = command(c, &h, "HMGET %b t v", k, kl);
    if (rc)
        return rc;
    struct store_obj o = {.scope = (uint8_t)scope,
                          .object = (uint16_t)object,
                          .key = k + tl + 3 + used,
                          .klen = kl - tl - 3 - (size_t)used};
    const redisReply *t = h->elements == 2 ? h->element[0] : NULL, *v = t ? h->element[1] : NULL;
    if (!t || t->type != REDIS_REPLY_STRING || t->len != 1) {
        freeReplyObject(h); /* deleted since SCAN saw it: not live */
        return STORE_OK;
    }
    o.type = (uint8_t)t->str[0];
    if (o.type == STORE_T_INT && v->type == REDIS_REPLY_STRING)
        o.i = strtoll(v->str, NULL, 10);
    else if (o.type == STORE_T_BYTES && v->type == REDIS_REPLY_STRING)
        o.val = v->str, o.len = v->len;
    if (o.type != STORE_T_LIST) {
        rc = fn(arg, &o);
        freeReplyObject(h);
        return rc;
    }
    redisReply *l;
    rc = command(c, &l, "LRANGE %b%s%b 0 -1", k, tl + 1, "l", k + tl + 1, kl - tl - 1);
    if (rc) {
        freeReplyObject(h);
        return rc;
    }
    o.nelem = l->type == REDIS_REPLY_ARRAY ? l->elements : 0;
    if (!o.nelem)
        rc = fn(arg, &o);
    for (size_t i = 0; !rc && i < o.nelem; i++) {
        o.val = l->element[i]->str, o.len = l->element[i]->len, o.elem = i;
        rc = fn(arg, &o);
    }
    freeReplyObject(l);
    freeReplyObject(h);
    return rc;
}

struct scan_keys {
    redisReply **v;
    size_t n, cap;
};

static int by_key(const void *a, const void *b)
{
    const redisReply *x = *(redisReply *const *)a, *y = *(redisReply *const *)b;
    int d = memcmp(x->str, y->str, x->len < y->len ? x->len : y->len);
    return d ? d : (x->len > y->len) - (x->len < y->len);
}

/* SCAN may return a key twice and is not a snapshot: every key is gathered
 * first, sorted (so the scan's order is the keys' byte order) and shown once.
 * The view is consistent when nothing writes, as at the end of a run, which is
 * when store_scan is for. */
static int redis_scan(struct store_client *c, store_scan_fn fn, void *arg)
{
    struct redis_cl *r = c->impl;
    char cursor[32] = "0", match[64];
    size_t tl = strlen(r->tag);
    struct scan_keys k = {0};
    redisReply **pages = NULL;
    size_t npages = 0;
    int rc = settle(c, 0, NULL);
    snprintf(match, sizeof(match), "%s:d:*", r->tag);
    while (!rc) {
        redisReply *rep;
        if ((rc = command(c, &rep, "SCAN %s MATCH %s COUNT 1000", cursor, match)))
            break;
        void *np = realloc(pages, (npages + 1) * sizeof(*pages));
        if (!np) {
            freeReplyObject(rep);
            rc = store_errf(c, STORE_ENOMEM, "out of memory");
            break;
        }
        pages = np;
        pages[npages++] = rep; /* its key strings are used until the end */
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
            rep->element[0]->type != REDIS_REPLY_STRING ||
            rep->element[1]->type != REDIS_REPLY_ARRAY) {
            rc = store_errf(c, STORE_EBACKEND, "redis: malformed SCAN reply");
            break;
        }
        const redisReply *keys = rep->element[1];
        if (k.n + keys->elements > k.cap) {
            size_t cap = (k.n + keys->elements) * 2;
            void *nv = realloc(k.v, cap * sizeof(*k.v));
            if (!nv) {
                rc = store_errf(c, STORE_ENOMEM, "out of memory");
                break;
            }
            k.v = nv, k.cap = cap;
        }
        for (size_t i = 0; i < keys->elements; i++)
            k.v[k.n++] = keys->element[i];
        snprintf(cursor, sizeof(cursor), "%s", rep->element[0]->str);
        if (!strcmp(cursor, "0"))
            break;
    }
    if (!rc && k.n)
        qsort(k.v, k.n, sizeof(*k.v), by_key);
    for (size_t i = 0; !rc && i < k.n; i++)
        if (!i || by_key(&k.v[i - 1], &k.v[i]))
            rc = scan_object(c, k.v[i]->str, k.v[i]->len, tl, fn, arg);
    for (size_t i = 0; i < npages; i++)
        freeReplyObject(pages[i]);
    free(pages);
    free(k.v);
    return rc;
}

const struct store_backend store_be_redis = {
    redis_open,  redis_close,       redis_client_open, redis_client_close, redis_apply,
    redis_wait,  redis_claim,       redis_transfer,    redis_watermark,    redis_trim,
    redis_uv,    redis_flush_async, redis_bind_run,    redis_scan,         NULL,
    redis_since,
};
