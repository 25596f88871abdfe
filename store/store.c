/*
 * store.c - the client side of the state store: URL dispatch, the op queue that
 * turns blind updates into batches, and the public op functions. Sync ops are
 * appended to the queue and the whole queue is applied with them, so an op never
 * overtakes an earlier blind update of the same worker.
 */
#include "store_cache.h"
#include "store_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int store_errf(struct store_client *c, int rc, const char *fmt, ...)
{
    c->err.code = rc;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err.msg, sizeof(c->err.msg), fmt, ap);
    va_end(ap);
    return rc;
}

int store_res_set(struct store_res *r, const void *p, size_t len)
{
    if (len > r->cap) {
        uint8_t *nb = realloc(r->buf, len);
        if (!nb)
            return STORE_ENOMEM;
        r->buf = nb;
        r->cap = len;
    }
    if (len)
        memcpy(r->buf, p, len);
    r->len = len;
    return STORE_OK;
}

/* Objects the client's slot alone changes: per-flow ones, and with
 * store_client_sole every object of the vertex. They are cached, read without
 * a record, and read as of a clock in a replay. */
static bool owned(const struct store_client *c, const struct store_key *k)
{
    return k->scope == STORE_FLOW || c->sole;
}

static bool cache_get(struct store_client *c, const struct store_key *k, struct store_cval *v)
{
    return owned(c, k) && store_cache_get(c->cache, k, v);
}

static bool ov_get(struct store_client *c, const struct store_key *k, struct store_oval *v)
{
    return owned(c, k) && store_asof_get(c->asof, k, v);
}

int store_open(const char *url, struct store **out, struct rw_err *err)
{
    const struct store_backend *be = NULL;
    const char *rest = NULL;
    if (!url || !out)
        return rw_errf(err, STORE_EINVAL, "store_open: NULL argument");
    if (strncmp(url, "mem:", 4) == 0)
        be = &store_be_mem, rest = url + 4;
    else if (strncmp(url, "lmdb:", 5) == 0)
        be = &store_be_lmdb, rest = url + 5;
    else if (strncmp(url, "redis://", 8) == 0)
        be = &store_be_redis, rest = url + 8;
    if (!be)
        return rw_errf(err, STORE_EURL,
                       "store URL '%s': expected lmdb:PATH, redis://HOST:PORT "
                       "or mem:",
                       url);
    struct store *st = calloc(1, sizeof(*st));
    if (!st)
        return rw_errf(err, STORE_ENOMEM, "store_open: out of memory");
    st->be = be;
    int rc = be->open(st, rest, err);
    if (rc) {
        free(st);
        return rc;
    }
    *out = st;
    return STORE_OK;
}

void store_close(struct store *st)
{
    if (!st)
        return;
    st->be->close(st);
    free(st);
}

int store_client_open(struct store *st, uint32_t vertex, uint16_t slot, struct store_client **out,
                      struct rw_err *err)
{
    if (!st || !out || slot >= STORE_SLOT_MAX)
        return rw_errf(err, STORE_EINVAL, "store_client_open: bad argument (slot %u)", slot);
    struct store_client *c = calloc(1, sizeof(*c));
    if (!c)
        return rw_errf(err, STORE_ENOMEM, "store_client_open: out of memory");
    c->st = st;
    c->vertex = vertex;
    c->slot = slot;
    c->batch_max = STORE_BATCH_DEF;
    int rc = st->be->client_open(c);
    if (rc) {
        rw_errf(err, rc, "%s", c->err.msg);
        store_client_close(c);
        return rc;
    }
    *out = c;
    return STORE_OK;
}

void store_client_close(struct store_client *c)
{
    if (!c)
        return;
    if (c->impl)
        c->st->be->client_close(c);
    store_cache_free(c->cache);
    store_asof_free(c->asof);
    free(c->q.ops);
    free(c->q.bytes);
    free(c->res.buf);
    free(c);
}

const char *store_client_errmsg(const struct store_client *c)
{
    return c ? c->err.msg : "no client";
}

int store_client_cache(struct store_client *c, unsigned n)
{
    if (!c || n > (1u << 20))
        return STORE_EINVAL;
    store_cache_free(c->cache);
    c->cache = NULL;
    if (n && !(c->cache = store_cache_new(n)))
        return store_errf(c, STORE_ENOMEM, "cache: out of memory");
    return STORE_OK;
}

/* Adds the object as it was before the first write after w (the walk comes in
 * op order, and the overlay keeps the first it is given per key). */
static int asof_one(void *arg, const struct store_pre *p)
{
    struct store_client *c = arg;
    if (p->type != 0 && p->type != 's' && p->type != 'i')
        return STORE_OK; /* a list: only pop reads one, and its result is recorded */
    struct store_key k = {p->scope, p->object, p->key, p->klen};
    bool mine = p->scope == STORE_FLOW ? p->owner == c->slot : c->sole;
    struct store_oval v = {p->type, p->type && mine, p->i, p->val, p->len};
    if (store_asof_add(c->asof, &k, &v))
        return store_errf(c, STORE_ENOMEM, "as-of overlay: out of memory");
    return STORE_OK;
}

int store_client_asof(struct store_client *c, uint64_t from)
{
    if (!c)
        return STORE_EINVAL;
    if (!c->st->be->since)
        return store_errf(c, STORE_EINVAL, "this backend cannot read as of a watermark");
    store_asof_free(c->asof);
    if (!(c->asof = store_asof_new()))
        return store_errf(c, STORE_ENOMEM, "as-of overlay: out of memory");
    store_cache_clear(c->cache);
    c->asof_from = from;
    int rc = c->st->be->since(c, from, asof_one, c);
    if (rc) {
        store_asof_free(c->asof);
        c->asof = NULL;
    }
    return rc;
}

void store_client_asof_undo(struct store_client *c, uint64_t clock, uint16_t sub)
{
    if (c)
        store_asof_undo(c->asof, clock, sub);
}

int store_client_sole(struct store_client *c, bool sole)
{
    if (!c)
        return STORE_EINVAL;
    c->sole = sole;
    store_cache_clear(c->cache);
    return STORE_OK;
}

int store_client_asof_move(struct store_client *c, struct store_client *from)
{
    if (!c || !from || c->vertex != from->vertex || c->slot != from->slot)
        return c ? store_errf(c, STORE_EINVAL, "as-of overlay: not the same slot") : STORE_EINVAL;
    store_asof_free(c->asof);
    c->asof = from->asof;
    c->asof_from = from->asof_from;
    from->asof = NULL;
    store_cache_clear(c->cache);
    return STORE_OK;
}

/* After a sync read with an id of a per-flow object on an as-of client: the
 * store's answer holds unless it is newer than the overlay knows. The slot's
 * live worker (an upstream NF re-run in a recovery runs beside it) may have
 * written the object after the overlay was gathered: a stamp above the
 * watermark, or an absence nobody recorded (a delete: a read that found nothing
 * has a record). The overlay then gathers again (it keeps what it has), and
 * *use says whether *v now answers instead. */
/* Finds the value of one key before its first write at or after a clock. */
struct pick {
    struct store_client *c;
    const struct store_key *k;
    uint64_t clock; /* the op it is for: writes before it in its packet are skipped */
    uint32_t seq;
    bool got;
    struct store_oval v;
    uint8_t *bytes;
};

static int pick_one(void *arg, const struct store_pre *p)
{
    struct pick *x = arg;
    if (x->got || (p->clock == x->clock && p->seq < x->seq) || p->scope != x->k->scope ||
        p->object != x->k->object || p->klen != x->k->len ||
        (p->klen && memcmp(p->key, x->k->bytes, p->klen)))
        return STORE_OK;
    if (p->type != 0 && p->type != 's' && p->type != 'i')
        return STORE_OK;
    if (p->len && !(x->bytes = malloc(p->len)))
        return store_errf(x->c, STORE_ENOMEM, "as-of overlay: out of memory");
    if (p->len)
        memcpy(x->bytes, p->val, p->len);
    bool mine = p->scope == STORE_FLOW ? p->owner == x->c->slot : x->c->sole;
    x->v = (struct store_oval){p->type, p->type && mine, p->i, x->bytes, p->len};
    x->got = true;
    return STORE_OK;
}

/* A key this client first wrote blind (FOLLOW: "the store holds its value")
 * that the store shows written at a later clock: the slot's other copy, ahead
 * (a straggler beside its clone, design.md: Stragglers), wrote it since. The
 * value as of this op is the one before the first write from this op on (the
 * packet's earlier writes, this client's own blind one among them, are in it:
 * taking the value before them lost a load balancer's decrement); the overlay
 * keeps it from now (undone with the packet, should it run again). */
static int asof_follow(struct store_client *c, const struct store_opid *id,
                       const struct store_key *k, bool *use, struct store_oval *v)
{
    struct pick x = {.c = c, .k = k, .clock = id->clock, .seq = id->seq};
    int rc = c->st->be->since(c, id->clock, pick_one, &x);
    if (rc == STORE_OK && x.got &&
        store_asof_set(c->asof, k, &x.v, id->clock, (uint16_t)(id->seq >> 16)))
        rc = store_errf(c, STORE_ENOMEM, "as-of overlay: out of memory");
    free(x.bytes);
    if (rc == STORE_OK && x.got)
        *use = ov_get(c, k, v);
    return rc;
}

static int asof_fresh(struct store_client *c, const struct store_opid *id,
                      const struct store_key *k, bool *use, struct store_oval *v)
{
    *use = false;
    if (c->asof && id && owned(c, k) && !c->res.recorded && ov_get(c, k, v) &&
        v->type == STORE_ASOF_FOLLOW && c->res.found && c->res.stamp > id->clock)
        return asof_follow(c, id, k, use, v);
    if (!c->asof || !id || !owned(c, k) || c->res.recorded || ov_get(c, k, v) ||
        (c->res.found && c->res.stamp < c->asof_from))
        return STORE_OK;
    int rc = c->st->be->since(c, c->asof_from, asof_one, c);
    if (rc == STORE_OK)
        *use = ov_get(c, k, v);
    return rc;
}

void store_client_stats(const struct store_client *c, struct store_stats *s)
{
    *s = c->stats;
}

int store_client_set_batch(struct store_client *c, unsigned n)
{
    if (!c || n == 0 || n > 65536)
        return STORE_EINVAL;
    c->batch_max = n;
    return STORE_OK;
}

static int q_bytes(struct store_batch *b, const void *p, size_t len, uint32_t *off)
{
    if (b->nb + len > b->capb) {
        size_t nc = b->capb ? b->capb * 2 : 4096;
        while (nc < b->nb + len)
            nc *= 2;
        uint8_t *nb = realloc(b->bytes, nc);
        if (!nb)
            return STORE_ENOMEM;
        b->bytes = nb;
        b->capb = nc;
    }
    *off = (uint32_t)b->nb;
    if (len)
        memcpy(b->bytes + b->nb, p, len);
    b->nb += len;
    return STORE_OK;
}

static int check_key(struct store_client *c, const struct store_key *k)
{
    if (!k || (k->len && !k->bytes) || k->len > STORE_KEY_MAX ||
        (k->scope != STORE_SHARED && k->scope != STORE_FLOW))
        return store_errf(c, STORE_EINVAL, "bad key (NULL, scope or length > %d)", STORE_KEY_MAX);
    return STORE_OK;
}

/* A key's bit in the queue's filter of keys (qkeys: 1024 bits). */
static unsigned qkey_bit(const struct store_key *k)
{
    uint32_t h = 2166136261u ^ k->object;
    const uint8_t *p = k->bytes;
    for (size_t i = 0; i < k->len; i++)
        h = (h ^ p[i]) * 16777619u;
    return (h ^ h >> 10 ^ h >> 20) & 1023;
}

static bool qkey_maybe(const struct store_client *c, const struct store_key *k)
{
    unsigned h = qkey_bit(k);
    return (c->qkeys[h >> 6] >> (h & 63)) & 1;
}

/* Appends an op to the queue; a, b are its argument bytes. */
static int enqueue(struct store_client *c, struct store_op *o, const struct store_key *k,
                   const void *a, size_t alen, const void *b, size_t blen)
{
    struct store_batch *q = &c->q;
    if (alen > STORE_VAL_MAX || blen > STORE_VAL_MAX)
        return store_errf(c, STORE_EINVAL, "value of %zu bytes > %d", alen > blen ? alen : blen,
                          STORE_VAL_MAX);
    if (q->n == q->cap) {
        size_t nc = q->cap ? q->cap * 2 : 64;
        struct store_op *no = realloc(q->ops, nc * sizeof(*no));
        if (!no)
            return store_errf(c, STORE_ENOMEM, "op queue: out of memory");
        q->ops = no;
        q->cap = nc;
    }
    if (k) {
        o->scope = k->scope;
        o->object = k->object;
        o->klen = (uint32_t)k->len;
        o->owned = owned(c, k);
    }
    if (q_bytes(q, k ? k->bytes : NULL, k ? k->len : 0, &o->koff) ||
        q_bytes(q, a, alen, &o->aoff) || q_bytes(q, b, blen, &o->boff))
        return store_errf(c, STORE_ENOMEM, "op queue: out of memory");
    o->alen = (uint32_t)alen;
    o->blen = (uint32_t)blen;
    q->ops[q->n++] = *o;
    if (k) {
        unsigned h = qkey_bit(k);
        c->qkeys[h >> 6] |= 1ull << (h & 63);
    }
    return STORE_OK;
}

/* A refusal that belongs to one op (a read of an object another slot owns, an op
 * of the wrong type), not to the batch. */
static bool op_refusal(int rc)
{
    return rc == STORE_EOWNER || rc == STORE_ETYPE;
}

/* A refusal that is not the answer of the op in hand: a caller may take an op's
 * own refusal as an answer (a read of another slot's object is "not mine"), never
 * another op's, whose batch is lost. */
static int not_mine(struct store_client *c, int rc)
{
    if (!op_refusal(rc))
        return rc;
    char why[RW_ERR_MSG_MAX];
    snprintf(why, sizeof(why), "%s", c->err.msg);
    return store_errf(c, STORE_EREFUSED, "an op queued earlier was refused (%.400s)", why);
}

/* Hands the queue to the backend; sync waits for the last op's result.
 *
 * A batch is all or nothing, but the blind ops queued before a sync op were
 * issued by earlier packets and have been answered already: when only the sync
 * op (always the last) is refused, the others are applied without it, and the
 * caller gets the refusal as that op's answer. When they are refused without it,
 * the refusal was theirs: STORE_EREFUSED. */
static int send_queue(struct store_client *c, bool sync)
{
    uint64_t wm = c->done > c->done_sent ? c->done : 0;
    if (c->q.n == 0 && wm == 0 && !sync)
        return STORE_OK;
    int rc = c->st->be->apply(c, &c->q, wm, sync, &c->res);
    bool applied = rc == STORE_OK;
    if (sync && op_refusal(rc)) {
        struct rw_err refusal = c->err;
        int again = STORE_OK;
        if (c->q.n > 1 || wm) {
            c->q.n--;
            again = c->st->be->apply(c, &c->q, wm, true, &c->res);
            c->q.n++; /* counted below as sent */
        }
        applied = again == STORE_OK;
        if (again)
            rc = not_mine(c, again);
        else
            c->err = refusal;
    }
    c->stats.batches++;
    c->stats.ops += c->q.n;
    c->q.n = 0;
    c->q.nb = 0;
    memset(c->qkeys, 0, sizeof(c->qkeys));
    if (applied && wm)
        c->done_sent = wm;
    /* Local answers may rest on ops the store refused. */
    if (!applied)
        store_cache_clear(c->cache);
    return rc;
}

static int blind(struct store_client *c, struct store_op *o, const struct store_key *k,
                 const void *a, size_t alen)
{
    int rc = enqueue(c, o, k, a, alen, NULL, 0);
    if (rc == STORE_OK && c->q.n >= c->batch_max)
        rc = not_mine(c, send_queue(c, false)); /* a full batch: any of its ops */
    return rc;
}

static int sync_op(struct store_client *c, struct store_op *o, const struct store_key *k,
                   const void *a, size_t alen, const void *b, size_t blen)
{
    int rc = enqueue(c, o, k, a, alen, b, blen);
    if (rc == STORE_OK)
        rc = send_queue(c, true);
    return rc;
}

/* A read with an id that the cache did not answer. With a backend that reads
 * without a transaction of writes (LMDB, mem) and no op on the key queued (the
 * view would miss it), it is answered from a read-only view and the queue
 * stays; an answer that must be recorded (any but a per-flow object found: the
 * reader's own) queues a note of it, applied with the next batch, which records
 * it unless the op is recorded already. Otherwise it is a sync op. */
static int view_read(struct store_client *c, struct store_op *o, const struct store_key *k)
{
    if (!c->st->be->read || !o->has_id || qkey_maybe(c, k))
        return sync_op(c, o, k, NULL, 0, NULL, 0);
    o->scope = k->scope;
    o->object = k->object;
    o->klen = (uint32_t)k->len;
    o->owned = owned(c, k);
    int rc = c->st->be->read(c, o, k->bytes, &c->res);
    if (rc || c->res.recorded || (owned(c, k) && c->res.found))
        return rc;
    struct store_op note = *o;
    note.kind = SOP_NOTE;
    note.to = (uint16_t)(o->kind | (c->res.found ? 0x100 : 0));
    note.delta = c->res.i;
    /* Queued, never sent from here: a batch sent now would overwrite res, the
     * read's answer (the next op sends it when the queue is full). */
    return enqueue(c, &note, k, c->res.buf, c->res.len, NULL, 0);
}

static struct store_op op_of(uint8_t kind, const struct store_opid *id)
{
    struct store_op o = {.kind = kind};
    if (id) {
        o.has_id = 1;
        o.clock = id->clock;
        o.seq = id->seq;
    }
    return o;
}

static int need(struct store_client *c, const void *p, const char *what)
{
    if (!c)
        return STORE_EINVAL;
    if (!p)
        return store_errf(c, STORE_EINVAL, "%s: NULL argument", what);
    return STORE_OK;
}

/* Copies the result bytes out; ETOOBIG keeps the needed size in *len. */
static int copy_out(struct store_client *c, void *buf, size_t cap, size_t *len)
{
    *len = c->res.len;
    if (c->res.len > cap)
        return store_errf(c, STORE_ETOOBIG, "value of %zu bytes, buffer of %zu", c->res.len, cap);
    if (c->res.len)
        memcpy(buf, c->res.buf, c->res.len);
    return STORE_OK;
}

/* A read with an id that the client answers itself: a per-flow object of its
 * own, from the cache or the as-of overlay. No op is queued: only the owner
 * changes such an object, so a replay of its packets from the watermark reads it
 * again as of the same point (store_kv.c: op records). */
static int local_read(struct store_client *c)
{
    c->stats.cache_hits++;
    return STORE_OK;
}

/* The overlay's answer to a read with an id: only a per-flow object of the
 * client's own (absent or another slot's: the store answers, from the read's
 * record when the first run made it). */
static bool asof_read(struct store_client *c, const struct store_opid *id,
                      const struct store_key *k, struct store_oval *v)
{
    return id && ov_get(c, k, v) && v->mine;
}

/* Keeps the overlay at the client's position: every write to one of its keys. */
static int asof_write(struct store_client *c, const struct store_opid *id,
                      const struct store_key *k, uint8_t type, int64_t i, const void *p, size_t len)
{
    struct store_oval v = {type, type != 0 && type != STORE_ASOF_FOLLOW, i, p, len};
    if (owned(c, k) && store_asof_set(c->asof, k, &v, id->clock, (uint16_t)(id->seq >> 16)))
        return store_errf(c, STORE_ENOMEM, "as-of overlay: out of memory");
    return STORE_OK;
}

static void cache_put(struct store_client *c, const struct store_key *k, uint8_t type, int64_t i,
                      const void *p, size_t len)
{
    if (!owned(c, k))
        return;
    struct store_cval v = {type, i, p, len};
    store_cache_set(c->cache, k, &v);
}

int store_get(struct store_client *c, const struct store_opid *id, const struct store_key *k,
              void *buf, size_t cap, size_t *len, bool *found)
{
    int rc = need(c, len, "store_get");
    if (rc || (rc = need(c, found, "store_get")) || (rc = check_key(c, k)))
        return rc;
    struct store_op o = op_of(SOP_GET, id);
    struct store_cval v;
    struct store_oval ov;
    if (asof_read(c, id, k, &ov) && ov.type != 'i')
        v = (struct store_cval){ov.type, 0, ov.bytes, ov.len};
    else if (!(id && cache_get(c, k, &v) && v.type == 's'))
        v.type = 0;
    if (v.type) {
        *len = v.len;
        if (v.len > cap)
            return store_errf(c, STORE_ETOOBIG, "value of %zu bytes, buffer of %zu", v.len, cap);
        if (v.len)
            memcpy(buf, v.bytes, v.len);
        *found = true;
        return local_read(c);
    }
    bool use;
    if ((rc = view_read(c, &o, k)) || (rc = asof_fresh(c, id, k, &use, &ov)))
        return rc;
    if (use) {
        *found = ov.mine && ov.type == 's';
        if (ov.mine && ov.type == 'i')
            return store_errf(c, STORE_ETYPE, "per-flow object is 'i', read as 's'");
        if ((rc = store_res_set(&c->res, ov.bytes, *found ? ov.len : 0)))
            return store_errf(c, rc, "out of memory");
        return copy_out(c, buf, cap, len);
    }
    *found = c->res.found;
    if (id && c->res.found) /* absence is no ownership: another slot may create it */
        cache_put(c, k, 's', 0, c->res.buf, c->res.len);
    return copy_out(c, buf, cap, len);
}

int store_get_int(struct store_client *c, const struct store_opid *id, const struct store_key *k,
                  int64_t *v, bool *found)
{
    int rc = need(c, v, "store_get_int");
    if (rc || (rc = need(c, found, "store_get_int")) || (rc = check_key(c, k)))
        return rc;
    struct store_op o = op_of(SOP_GETI, id);
    struct store_cval cv;
    struct store_oval ov;
    if (asof_read(c, id, k, &ov) && ov.type == 'i') {
        *found = true;
        *v = ov.i;
        return local_read(c);
    }
    if (id && cache_get(c, k, &cv) && cv.type == 'i') {
        *found = true;
        *v = cv.i;
        return local_read(c);
    }
    bool use;
    if ((rc = view_read(c, &o, k)) || (rc = asof_fresh(c, id, k, &use, &ov)))
        return rc;
    if (use) {
        *found = ov.mine && ov.type == 'i';
        *v = *found ? ov.i : 0;
        if (ov.mine && ov.type == 's')
            return store_errf(c, STORE_ETYPE, "per-flow object is 's', read as 'i'");
        return STORE_OK;
    }
    *found = c->res.found;
    *v = c->res.found ? c->res.i : 0;
    if (id && c->res.found)
        cache_put(c, k, 'i', *v, NULL, 0);
    return STORE_OK;
}

int store_put(struct store_client *c, const struct store_opid *id, const struct store_key *k,
              const void *val, size_t len)
{
    int rc = need(c, id, "store_put");
    if (rc || (rc = check_key(c, k)))
        return rc;
    if (len && !val)
        return store_errf(c, STORE_EINVAL, "store_put: NULL value");
    struct store_op o = op_of(SOP_PUT, id);
    if ((rc = blind(c, &o, k, val, len)) == STORE_OK) {
        cache_put(c, k, 's', 0, val, len);
        rc = asof_write(c, id, k, 's', 0, val, len);
    }
    return rc;
}

int store_del(struct store_client *c, const struct store_opid *id, const struct store_key *k)
{
    int rc = need(c, id, "store_del");
    if (rc || (rc = check_key(c, k)))
        return rc;
    struct store_op o = op_of(SOP_DEL, id);
    store_cache_drop(c->cache, k); /* absence is not cached (see store_get) */
    rc = blind(c, &o, k, NULL, 0);
    return rc ? rc : asof_write(c, id, k, 0, 0, NULL, 0);
}

int store_push(struct store_client *c, const struct store_opid *id, const struct store_key *k,
               const void *val, size_t len)
{
    int rc = need(c, id, "store_push");
    if (rc || (rc = check_key(c, k)))
        return rc;
    if (len && !val)
        return store_errf(c, STORE_EINVAL, "store_push: NULL value");
    struct store_op o = op_of(SOP_PUSH, id);
    store_cache_drop(c->cache, k);
    return blind(c, &o, k, val, len);
}

int store_incr(struct store_client *c, const struct store_opid *id, const struct store_key *k,
               int64_t delta, int64_t *result)
{
    int rc = need(c, id, "store_incr");
    if (rc || (rc = check_key(c, k)))
        return rc;
    struct store_op o = op_of(SOP_INCR, id);
    o.delta = delta;
    struct store_cval v;
    struct store_oval ov;
    bool inov = ov_get(c, k, &ov), known;
    if (inov) /* as of the replay's position; absent: 0, or another's (refused) */
        known = ov.type == 0 || (ov.type == 'i' && ov.mine), v.type = ov.type, v.i = ov.i;
    else
        known = cache_get(c, k, &v) && v.type != 's';
    int64_t now = (int64_t)((uint64_t)(known && v.type == 'i' ? v.i : 0) + (uint64_t)delta);
    if (!result || known) {
        if (result) {
            *result = now;
            c->stats.cache_hits++;
        }
        rc = blind(c, &o, k, NULL, 0);
        if (rc == STORE_OK && known)
            cache_put(c, k, 'i', now, NULL, 0);
        if (rc)
            return rc;
        return known ? asof_write(c, id, k, 'i', now, NULL, 0)
                     : asof_write(c, id, k, STORE_ASOF_FOLLOW, 0, NULL, 0);
    }
    if ((rc = sync_op(c, &o, k, NULL, 0, NULL, 0)))
        return rc;
    *result = c->res.i;
    cache_put(c, k, 'i', c->res.i, NULL, 0);
    return asof_write(c, id, k, 'i', c->res.i, NULL, 0);
}

int store_decr(struct store_client *c, const struct store_opid *id, const struct store_key *k,
               int64_t delta, int64_t *result)
{
    if (delta == INT64_MIN)
        return c ? store_errf(c, STORE_EINVAL, "store_decr: delta INT64_MIN") : STORE_EINVAL;
    return store_incr(c, id, k, -delta, result);
}

int store_pop(struct store_client *c, const struct store_opid *id, const struct store_key *k,
              void *buf, size_t cap, size_t *len, bool *found)
{
    int rc = need(c, id, "store_pop");
    if (rc || (rc = need(c, len, "store_pop")) || (rc = need(c, found, "store_pop")) ||
        (rc = check_key(c, k)))
        return rc;
    struct store_op o = op_of(SOP_POP, id);
    store_cache_drop(c->cache, k);
    if ((rc = sync_op(c, &o, k, NULL, 0, NULL, 0)))
        return rc;
    *found = c->res.found;
    return copy_out(c, buf, cap, len);
}

int store_cas(struct store_client *c, const struct store_opid *id, const struct store_key *k,
              const void *expect, size_t elen, const void *nv, size_t nlen, bool *swapped)
{
    int rc = need(c, id, "store_cas");
    if (rc || (rc = need(c, swapped, "store_cas")) || (rc = check_key(c, k)))
        return rc;
    if (nlen && !nv)
        return store_errf(c, STORE_EINVAL, "store_cas: NULL new value");
    struct store_op o = op_of(SOP_CAS, id);
    o.has_a = expect != NULL;
    if ((rc = sync_op(c, &o, k, expect, expect ? elen : 0, nv, nlen)))
        return rc;
    *swapped = c->res.swapped;
    if (!c->res.swapped) {
        store_cache_drop(c->cache, k);
        return STORE_OK;
    }
    cache_put(c, k, 's', 0, nv, nlen);
    return asof_write(c, id, k, 's', 0, nv, nlen);
}

int store_nondet(struct store_client *c, const struct store_opid *id, store_gen_fn gen, void *arg,
                 void *buf, size_t cap, size_t *len)
{
    int rc = need(c, id, "store_nondet");
    if (rc || (rc = need(c, gen, "store_nondet")) || (rc = need(c, len, "store_nondet")))
        return rc;
    struct store_op o = op_of(SOP_NDLOOK, id);
    if ((rc = sync_op(c, &o, NULL, NULL, 0, NULL, 0)))
        return rc;
    if (c->res.found)
        return copy_out(c, buf, cap, len);
    size_t glen = 0;
    if ((rc = gen(arg, buf, cap, &glen)))
        return store_errf(c, rc, "store_nondet: generator failed (%d)", rc);
    if (glen > cap)
        return store_errf(c, STORE_EINVAL, "store_nondet: generator overran its buffer");
    o = op_of(SOP_NDSET, id);
    if ((rc = sync_op(c, &o, NULL, buf, glen, NULL, 0)))
        return rc;
    return copy_out(c, buf, cap, len);
}

int store_done(struct store_client *c, uint64_t clock)
{
    if (!c)
        return STORE_EINVAL;
    if (clock > c->done)
        c->done = clock;
    return STORE_OK;
}

int store_flush(struct store_client *c)
{
    if (!c)
        return STORE_EINVAL;
    int rc = send_queue(c, false);
    if (rc == STORE_OK && (rc = c->st->be->wait(c)))
        store_cache_clear(c->cache);
    return rc;
}

int store_client_uv(struct store_client *c, struct uv_loop_s *loop)
{
    if (!c || !loop)
        return STORE_EINVAL;
    if (!c->st->be->uv)
        return store_errf(c, STORE_EINVAL, "uv mode is for the Redis backend");
    return c->st->be->uv(c, loop);
}

int store_flush_async(struct store_client *c, store_flush_cb cb, void *arg)
{
    if (!c || !cb)
        return STORE_EINVAL;
    if (!c->st->be->flush_async) {
        int rc = store_flush(c);
        cb(arg, rc);
        return STORE_OK;
    }
    int rc = send_queue(c, false);
    if (rc == STORE_OK)
        rc = c->st->be->flush_async(c, cb, arg);
    if (rc)
        store_cache_clear(c->cache);
    return rc;
}

int store_watermark(struct store_client *c, uint16_t slot, uint64_t *w)
{
    int rc = need(c, w, "store_watermark");
    if (rc)
        return rc;
    if (slot >= STORE_SLOT_MAX)
        return store_errf(c, STORE_EINVAL, "slot %u out of range", slot);
    return c->st->be->watermark(c, slot, w);
}

int store_claim(struct store_client *c)
{
    if (!c)
        return STORE_EINVAL;
    store_cache_clear(c->cache);
    return c->st->be->claim(c);
}

int store_transfer(struct store_client *c, uint16_t from, uint16_t to)
{
    if (!c)
        return STORE_EINVAL;
    if (from == to || from >= STORE_SLOT_MAX || to >= STORE_SLOT_MAX)
        return store_errf(c, STORE_EINVAL, "transfer %u -> %u: bad slots", from, to);
    int rc = store_flush(c);
    store_cache_clear(c->cache);
    return rc ? rc : c->st->be->transfer(c, from, to);
}

int store_move(struct store_client *c, const struct store_opid *id, const struct store_key *k,
               uint16_t to)
{
    int rc = need(c, id, "store_move");
    if (rc || (rc = check_key(c, k)))
        return rc;
    if (k->scope != STORE_FLOW || to >= STORE_SLOT_MAX)
        return store_errf(c, STORE_EINVAL, "store_move: only per-flow objects move, to a slot");
    struct store_op o = op_of(SOP_MOVE, id);
    o.to = to;
    store_cache_drop(c->cache, k);
    rc = sync_op(c, &o, k, NULL, 0, NULL, 0);
    return rc || !c->res.found ? rc : asof_write(c, id, k, 0, 0, NULL, 0); /* another's now */
}

int store_bind_run(struct store *st, const char *run, bool force, struct rw_err *e)
{
    struct store_client *c = NULL;
    if (!run)
        return rw_errf(e, STORE_EINVAL, "store_bind_run: NULL run");
    int rc = store_client_open(st, 0, 0, &c, e);
    if (rc)
        return rc;
    if ((rc = st->be->bind_run(c, run, force)))
        rw_errf(e, rc, "%s", c->err.msg);
    store_client_close(c);
    return rc;
}

int store_trim(struct store_client *c, uint64_t g)
{
    if (!c)
        return STORE_EINVAL;
    return c->st->be->trim(c, g);
}

int store_scan(struct store_client *c, store_scan_fn fn, void *arg)
{
    if (!c || !fn)
        return c ? store_errf(c, STORE_EINVAL, "store_scan: NULL callback") : STORE_EINVAL;
    if (!c->st->be->scan)
        return store_errf(c, STORE_EINVAL, "store_scan: this backend cannot list its objects");
    return c->st->be->scan(c, fn, arg);
}
