/*
 * store_kv.c - the store's semantics over key-value transactions (mem, LMDB).
 *
 * Layout (all integers big-endian so that memcmp order is numeric order):
 *   'd' vertex4 scope1 object2 klen1 key      -> object: type1 owner2 clock8 payload
 *   'e' vertex4 scope1 object2 klen1 key idx8 -> one list element
 *   'o' vertex4 clock8 seq4                   -> op record (below)
 *   'w' vertex4 slot2                         -> slot watermark (8)
 *   's' vertex4 slot2                         -> slot entry: epoch8 forward2
 *   'g' vertex4                               -> trim watermark G of the vertex (8)
 * Op records sort by clock within a vertex so that trimming below G is one range
 * delete; G is per vertex like everything else (Redis keeps a vertex together).
 * Object payloads: 's' bytes, 'i' int8, 'l' head8 tail8 (elements head..tail-1);
 * clock is that of the last op with an id that wrote the object (a read of it
 * returns it: a replay that finds it above the watermark it replays from knows
 * the store holds a later value, store_client_asof).
 *
 * An op record: kind1 flags1 int8 len4 bytes (the op's result: flags 1 found,
 * 2 swapped), and, for a write to a per-flow object (flags 4; any object of a
 * store_client_sole client's), what a read as of an earlier clock needs
 * (store_client_asof): writer-slot2 scope1 object2 klen1 key and
 * the object before the op: type1 (0 absent) owner2 len4 payload. A read of a
 * per-flow object that finds it has no record: only the owner can have changed
 * it, in clock order, so a replay of the owner's packets from its watermark
 * reads it again, as of the same point, from the store or the as-of overlay
 * (design.md: Invariants). A read that finds nothing is recorded: another slot
 * may create the object before a replay reads it again.
 */
#include "store_kv.h"

#include <stdlib.h>
#include <string.h>

#define DK_MAX (9 + STORE_KEY_MAX)

struct kx {
    struct store_client *c;
    const struct kv_ops *kv;
    void *txn;
    const struct store_batch *b;
    uint64_t g;
    uint16_t self_root; /* where the client's own slot resolves to */
    uint64_t op_clock;  /* the op being applied's clock (0: no id), stamped on objects */
    uint8_t *pre;       /* the pre-image section of the op record being made */
    size_t npre, cpre;
};

struct meta {
    bool exists;
    uint8_t type;
    uint16_t owner;
    uint64_t clock; /* of the last op with an id that wrote it */
    int64_t i;
    uint64_t head, tail;
    const uint8_t *bytes;
    size_t len;
};

struct slotent {
    uint64_t epoch;
    uint16_t fwd;
};

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)(v >> 16));
    put16(p + 2, (uint16_t)v);
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static size_t k_data(uint8_t *out, uint32_t vertex, const struct store_op *o, const uint8_t *kb)
{
    out[0] = 'd';
    put32(out + 1, vertex);
    out[5] = o->scope;
    put16(out + 6, o->object);
    out[8] = (uint8_t)o->klen;
    memcpy(out + 9, kb, o->klen);
    return 9 + o->klen;
}

static size_t k_elem(uint8_t *out, const uint8_t *dk, size_t dl, uint64_t idx)
{
    out[0] = 'e';
    memcpy(out + 1, dk + 1, dl - 1);
    rw_put_be64(out + dl, idx);
    return dl + 8;
}

static void k_op(uint8_t out[17], uint64_t clock, uint32_t vertex, uint32_t seq)
{
    out[0] = 'o';
    put32(out + 1, vertex);
    rw_put_be64(out + 5, clock);
    put32(out + 13, seq);
}

static void k_slot(uint8_t out[7], char tag, uint32_t vertex, uint16_t slot)
{
    out[0] = (uint8_t)tag;
    put32(out + 1, vertex);
    put16(out + 5, slot);
}

/* Reads a big-endian u64 value (absent: 0). */
static int get_u64(struct kx *x, const uint8_t *k, size_t kl, uint64_t *v)
{
    const uint8_t *p;
    size_t n;
    int rc = x->kv->get(x->c, x->txn, k, kl, &p, &n);
    if (rc < 0)
        return rc;
    *v = 0;
    if (rc == 0) {
        if (n != 8)
            return store_errf(x->c, STORE_ECORRUPT, "u64 record of %zu bytes", n);
        *v = rw_get_be64(p);
    }
    return STORE_OK;
}

static int put_u64(struct kx *x, const uint8_t *k, size_t kl, uint64_t v)
{
    uint8_t b[8];
    rw_put_be64(b, v);
    return x->kv->put(x->c, x->txn, k, kl, b, 8);
}

static int slot_get(struct kx *x, uint16_t slot, struct slotent *e)
{
    uint8_t k[7];
    const uint8_t *p;
    size_t n;
    k_slot(k, 's', x->c->vertex, slot);
    int rc = x->kv->get(x->c, x->txn, k, 7, &p, &n);
    if (rc < 0)
        return rc;
    e->epoch = 0;
    e->fwd = STORE_NO_SLOT;
    if (rc == 0) {
        if (n != 10)
            return store_errf(x->c, STORE_ECORRUPT, "slot entry of %zu bytes", n);
        e->epoch = rw_get_be64(p);
        e->fwd = get16(p + 8);
    }
    return STORE_OK;
}

static int slot_put(struct kx *x, uint16_t slot, const struct slotent *e)
{
    uint8_t k[7], v[10];
    k_slot(k, 's', x->c->vertex, slot);
    rw_put_be64(v, e->epoch);
    put16(v + 8, e->fwd);
    return x->kv->put(x->c, x->txn, k, 7, v, 10);
}

/* Follows transfers from slot to the slot that owns its objects now. */
static int resolve(struct kx *x, uint16_t slot, uint16_t *root)
{
    struct slotent e;
    for (int hops = 0; hops < STORE_SLOT_MAX; hops++) {
        int rc = slot_get(x, slot, &e);
        if (rc)
            return rc;
        if (e.fwd == STORE_NO_SLOT) {
            *root = slot;
            return STORE_OK;
        }
        slot = e.fwd;
    }
    return store_errf(x->c, STORE_ECORRUPT, "slot table has a forwarding cycle");
}

/* Parses an object record (n bytes at p). */
static int meta_parse(struct kx *x, const uint8_t *p, size_t n, struct meta *m)
{
    memset(m, 0, sizeof(*m));
    if (n < 11)
        return store_errf(x->c, STORE_ECORRUPT, "object record of %zu bytes", n);
    m->exists = true;
    m->type = p[0];
    m->owner = get16(p + 1);
    m->clock = rw_get_be64(p + 3);
    m->bytes = p + 11;
    m->len = n - 11;
    if (m->type == 'i' && m->len == 8)
        m->i = (int64_t)rw_get_be64(m->bytes);
    else if (m->type == 'l' && m->len == 16) {
        m->head = rw_get_be64(m->bytes);
        m->tail = rw_get_be64(m->bytes + 8);
    } else if (m->type != 's')
        return store_errf(x->c, STORE_ECORRUPT, "object record type %u len %zu", m->type, n);
    return STORE_OK;
}

static int meta_load(struct kx *x, const uint8_t *dk, size_t dl, struct meta *m)
{
    const uint8_t *p;
    size_t n;
    memset(m, 0, sizeof(*m));
    int rc = x->kv->get(x->c, x->txn, dk, dl, &p, &n);
    if (rc)
        return rc < 0 ? rc : STORE_OK;
    return meta_parse(x, p, n, m);
}

static int meta_put(struct kx *x, const uint8_t *dk, size_t dl, uint8_t type, uint16_t owner,
                    const uint8_t *pl, size_t plen)
{
    uint8_t stackbuf[64];
    uint8_t *v = plen + 11 <= sizeof(stackbuf) ? stackbuf : malloc(plen + 11);
    if (!v)
        return store_errf(x->c, STORE_ENOMEM, "object record: out of memory");
    v[0] = type;
    put16(v + 1, owner);
    rw_put_be64(v + 3, x->op_clock);
    if (plen)
        memcpy(v + 11, pl, plen);
    int rc = x->kv->put(x->c, x->txn, dk, dl, v, plen + 11);
    if (v != stackbuf)
        free(v);
    return rc;
}

static int put_int(struct kx *x, const uint8_t *dk, size_t dl, uint16_t owner, int64_t i)
{
    uint8_t b[8];
    rw_put_be64(b, (uint64_t)i);
    return meta_put(x, dk, dl, 'i', owner, b, 8);
}

static int put_list(struct kx *x, const uint8_t *dk, size_t dl, uint16_t owner, uint64_t h,
                    uint64_t t)
{
    uint8_t b[16];
    rw_put_be64(b, h);
    rw_put_be64(b + 8, t);
    return meta_put(x, dk, dl, 'l', owner, b, 16);
}

static int want_type(struct kx *x, const struct meta *m, uint8_t type, const struct store_op *o)
{
    if (m->exists && m->type != type)
        return store_errf(x->c, STORE_ETYPE, "op %u at (%llu,%u): object is '%c', op needs '%c'",
                          o->kind, (unsigned long long)o->clock, o->seq, m->type, type);
    return STORE_OK;
}

static int check_owner(struct kx *x, const struct store_op *o, const struct meta *m)
{
    struct store_client *c = x->c;
    if (o->scope != STORE_FLOW)
        return STORE_OK;
    if (x->self_root != c->slot)
        return store_errf(c, STORE_EOWNER, "slot %u was transferred to slot %u", c->slot,
                          x->self_root);
    uint16_t own = STORE_NO_SLOT;
    if (!m->exists)
        return STORE_OK;
    int rc = resolve(x, m->owner, &own);
    if (rc == STORE_OK && own != c->slot)
        rc = store_errf(c, STORE_EOWNER, "per-flow object owned by slot %u, op from slot %u", own,
                        c->slot);
    return rc;
}

static uint16_t new_owner(const struct kx *x, const struct store_op *o, const struct meta *m)
{
    if (m->exists)
        return m->owner;
    return o->scope == STORE_FLOW ? x->c->slot : STORE_NO_SLOT;
}

static int do_pop(struct kx *x, const uint8_t *dk, size_t dl, struct meta *m, struct store_res *r)
{
    uint8_t ek[DK_MAX + 8];
    const uint8_t *p;
    size_t n;
    if (!m->exists || m->head == m->tail)
        return STORE_OK;
    size_t el = k_elem(ek, dk, dl, m->head);
    int rc = x->kv->get(x->c, x->txn, ek, el, &p, &n);
    if (rc)
        return rc < 0 ? rc : store_errf(x->c, STORE_ECORRUPT, "list element missing");
    if (store_res_set(r, p, n))
        return store_errf(x->c, STORE_ENOMEM, "pop: out of memory");
    r->found = true;
    uint16_t owner = m->owner;
    uint64_t head = m->head + 1, tail = m->tail;
    if ((rc = x->kv->del(x->c, x->txn, ek, el)))
        return rc;
    return put_list(x, dk, dl, owner, head, tail);
}

static int do_push(struct kx *x, const uint8_t *dk, size_t dl, const struct meta *m,
                   const struct store_op *o)
{
    uint8_t ek[DK_MAX + 8];
    uint64_t h = m->exists ? m->head : 0, t = m->exists ? m->tail : 0;
    uint16_t owner = new_owner(x, o, m);
    size_t el = k_elem(ek, dk, dl, t);
    int rc = x->kv->put(x->c, x->txn, ek, el, x->b->bytes + o->aoff, o->alen);
    return rc ? rc : put_list(x, dk, dl, owner, h, t + 1);
}

static int do_del(struct kx *x, const uint8_t *dk, size_t dl, const struct meta *m,
                  struct store_res *r)
{
    uint8_t ek[DK_MAX + 8];
    if (!m->exists)
        return STORE_OK;
    r->found = true;
    for (uint64_t i = m->head; m->type == 'l' && i < m->tail; i++) {
        int rc = x->kv->del(x->c, x->txn, ek, k_elem(ek, dk, dl, i));
        if (rc)
            return rc;
    }
    return x->kv->del(x->c, x->txn, dk, dl);
}

static int do_cas(struct kx *x, const uint8_t *dk, size_t dl, const struct meta *m,
                  const struct store_op *o, struct store_res *r)
{
    const uint8_t *a = x->b->bytes + o->aoff;
    bool match =
        o->has_a ? (m->exists && m->len == o->alen && !memcmp(m->bytes, a, o->alen)) : !m->exists;
    if (!match)
        return STORE_OK;
    r->swapped = true;
    return meta_put(x, dk, dl, 's', new_owner(x, o, m), x->b->bytes + o->boff, o->blen);
}

static int do_move(struct kx *x, const uint8_t *dk, size_t dl, const struct meta *m,
                   const struct store_op *o, struct store_res *r)
{
    if (!m->exists)
        return STORE_OK;
    r->found = true;
    uint8_t *copy = malloc(m->len + 1);
    if (!copy)
        return store_errf(x->c, STORE_ENOMEM, "move: out of memory");
    memcpy(copy, m->bytes, m->len);
    int rc = meta_put(x, dk, dl, m->type, o->to, copy, m->len);
    free(copy);
    return rc;
}

/* Applies one op to a loaded object (ownership already checked). */
static int do_op(struct kx *x, const uint8_t *dk, size_t dl, struct meta *m,
                 const struct store_op *o, struct store_res *r)
{
    int rc;
    switch (o->kind) {
    case SOP_GET:
    case SOP_PUT:
    case SOP_CAS:
        if ((rc = want_type(x, m, 's', o)))
            return rc;
        if (o->kind == SOP_PUT)
            return meta_put(x, dk, dl, 's', new_owner(x, o, m), x->b->bytes + o->aoff, o->alen);
        if (o->kind == SOP_CAS)
            return do_cas(x, dk, dl, m, o, r);
        r->found = m->exists;
        r->stamp = m->clock;
        return store_res_set(r, m->bytes, m->len);
    case SOP_GETI:
    case SOP_INCR:
        if ((rc = want_type(x, m, 'i', o)))
            return rc;
        r->found = m->exists;
        r->i = m->i;
        r->stamp = m->clock;
        if (o->kind == SOP_GETI)
            return STORE_OK;
        r->i = (int64_t)((uint64_t)m->i + (uint64_t)o->delta);
        return put_int(x, dk, dl, new_owner(x, o, m), r->i);
    case SOP_PUSH:
    case SOP_POP:
        if ((rc = want_type(x, m, 'l', o)))
            return rc;
        return o->kind == SOP_PUSH ? do_push(x, dk, dl, m, o) : do_pop(x, dk, dl, m, r);
    case SOP_DEL:
        return do_del(x, dk, dl, m, r);
    case SOP_MOVE:
        return do_move(x, dk, dl, m, o, r);
    }
    return store_errf(x->c, STORE_EINVAL, "unknown op kind %u", o->kind);
}

static int rec_put(struct kx *x, const struct store_op *o, const struct store_res *r, bool pre)
{
    uint8_t k[17];
    k_op(k, o->clock, x->c->vertex, o->seq);
    size_t n = 14 + r->len + (pre ? x->npre : 0);
    uint8_t stackbuf[160];
    uint8_t *v = n <= sizeof(stackbuf) ? stackbuf : malloc(n);
    if (!v)
        return store_errf(x->c, STORE_ENOMEM, "op record: out of memory");
    v[0] = o->kind;
    v[1] = (uint8_t)((r->found ? 1 : 0) | (r->swapped ? 2 : 0) | (pre ? 4 : 0));
    rw_put_be64(v + 2, (uint64_t)r->i);
    put32(v + 10, (uint32_t)r->len);
    if (r->len)
        memcpy(v + 14, r->buf, r->len);
    if (pre)
        memcpy(v + 14 + r->len, x->pre, x->npre);
    int rc = x->kv->put(x->c, x->txn, k, 17, v, n);
    if (v != stackbuf)
        free(v);
    return rc;
}

/* Keeps the object as it is before a write to it (m: as loaded) for the op's
 * record; its bytes live in the transaction only until the write. */
static int pre_take(struct kx *x, const struct store_op *o, const struct meta *m)
{
    size_t plen = !m->exists ? 0 : m->type == 'i' ? 8 : m->len;
    size_t n = 6 + o->klen + 7 + plen;
    if (n > x->cpre) {
        uint8_t *nb = realloc(x->pre, n);
        if (!nb)
            return store_errf(x->c, STORE_ENOMEM, "op record: out of memory");
        x->pre = nb;
        x->cpre = n;
    }
    uint8_t *p = x->pre;
    put16(p, x->c->slot);
    p[2] = o->scope;
    put16(p + 3, o->object);
    p[5] = (uint8_t)o->klen;
    memcpy(p + 6, store_op_key(x->b, o), o->klen);
    p += 6 + o->klen;
    p[0] = m->exists ? m->type : 0;
    put16(p + 1, m->exists ? m->owner : STORE_NO_SLOT);
    put32(p + 3, (uint32_t)plen);
    if (m->exists && m->type == 'i')
        rw_put_be64(p + 7, (uint64_t)m->i);
    else if (plen)
        memcpy(p + 7, m->bytes, plen);
    x->npre = n;
    return STORE_OK;
}

/* Writes to objects the client's slot alone changes (per-flow ones, or all with
 * store_client_sole) whose record keeps the value before (lists are never read
 * but by pop, whose result is recorded). */
static bool flow_write(const struct store_op *o)
{
    return (o->scope == STORE_FLOW || o->owned) &&
           (o->kind == SOP_PUT || o->kind == SOP_DEL || o->kind == SOP_INCR || o->kind == SOP_CAS ||
            o->kind == SOP_MOVE);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)get16(p) << 16 | get16(p + 2);
}

/* 0: no record; 1: emulated (r filled); <0 error. */
static int rec_find(struct kx *x, const struct store_op *o, struct store_res *r)
{
    uint8_t k[17];
    const uint8_t *p;
    size_t n;
    if (o->clock < x->g)
        return store_errf(x->c, STORE_ETRIMMED, "op at clock %llu below trim watermark %llu",
                          (unsigned long long)o->clock, (unsigned long long)x->g);
    k_op(k, o->clock, x->c->vertex, o->seq);
    int rc = x->kv->get(x->c, x->txn, k, 17, &p, &n);
    if (rc)
        return rc < 0 ? rc : 0;
    if (n < 14 || get32(p + 10) > n - 14)
        return store_errf(x->c, STORE_ECORRUPT, "op record of %zu bytes", n);
    uint8_t want = o->kind == SOP_NDLOOK ? SOP_NDSET
                   : o->kind == SOP_NOTE ? (uint8_t)o->to
                                         : o->kind;
    if (p[0] != want)
        return store_errf(x->c, STORE_ECONFLICT, "op (%llu,%u) was kind %u, now kind %u",
                          (unsigned long long)o->clock, o->seq, p[0], o->kind);
    r->found = p[1] & 1;
    r->swapped = (p[1] & 2) != 0;
    r->i = (int64_t)rw_get_be64(p + 2);
    if (store_res_set(r, p + 14, get32(p + 10)))
        return store_errf(x->c, STORE_ENOMEM, "op record: out of memory");
    if (o->kind == SOP_NDLOOK)
        r->found = true;
    r->recorded = true;
    return 1;
}

static int exec_op(struct kx *x, const struct store_op *o, struct store_res *r)
{
    uint8_t dk[DK_MAX];
    struct meta m;
    memset(r, 0, offsetof(struct store_res, buf));
    r->len = 0;
    int rc = o->has_id ? rec_find(x, o, r) : 0;
    if (rc)
        return rc < 0 ? rc : STORE_OK;
    if (o->kind == SOP_NDLOOK)
        return STORE_OK;
    if (o->kind == SOP_NOTE) { /* not recorded yet (rec_find): the read's answer */
        struct store_op rd = *o;
        rd.kind = (uint8_t)o->to;
        r->found = (o->to >> 8) & 1;
        r->i = o->delta;
        if (store_res_set(r, x->b->bytes + o->aoff, o->alen))
            return store_errf(x->c, STORE_ENOMEM, "op record: out of memory");
        return rec_put(x, &rd, r, false);
    }
    if (o->kind == SOP_NDSET) {
        if (store_res_set(r, x->b->bytes + o->aoff, o->alen))
            return store_errf(x->c, STORE_ENOMEM, "nondet: out of memory");
        r->found = true;
        return rec_put(x, o, r, false);
    }
    size_t dl = k_data(dk, x->c->vertex, o, store_op_key(x->b, o));
    bool pre = o->has_id && flow_write(o);
    x->op_clock = o->has_id ? o->clock : 0;
    if ((rc = meta_load(x, dk, dl, &m)) || (rc = check_owner(x, o, &m)) ||
        (pre && (rc = pre_take(x, o, &m))) || (rc = do_op(x, dk, dl, &m, o, r)))
        return rc;
    /* A per-flow object found is the reader's own (check_owner), and so is any
     * object of a sole client's: no record. */
    bool own_read = (o->scope == STORE_FLOW || o->owned) &&
                    (o->kind == SOP_GET || o->kind == SOP_GETI) && r->found;
    return o->has_id && !own_read ? rec_put(x, o, r, pre) : STORE_OK;
}

/* Checks the client's epoch and loads what every op of the batch needs. */
static int prologue(struct kx *x)
{
    struct slotent e;
    uint8_t g[5] = {'g'};
    put32(g + 1, x->c->vertex);
    int rc = slot_get(x, x->c->slot, &e);
    if (rc)
        return rc;
    if (e.epoch != x->c->epoch)
        return store_errf(x->c, STORE_EFENCED, "slot %u now at epoch %llu, client at %llu",
                          x->c->slot, (unsigned long long)e.epoch, (unsigned long long)x->c->epoch);
    if ((rc = resolve(x, x->c->slot, &x->self_root)))
        return rc;
    return get_u64(x, g, 5, &x->g);
}

static int raise_wm(struct kx *x, uint64_t wm)
{
    uint8_t k[7];
    uint64_t old;
    k_slot(k, 'w', x->c->vertex, x->c->slot);
    int rc = get_u64(x, k, 7, &old);
    if (rc || wm <= old)
        return rc;
    return put_u64(x, k, 7, wm);
}

static int begin(struct kx *x, struct store_client *c, const struct kv_ops *kv, void *db,
                 bool write)
{
    memset(x, 0, sizeof(*x));
    x->c = c;
    x->kv = kv;
    return kv->begin(c, db, write, &x->txn);
}

static int finish(struct kx *x, int rc)
{
    free(x->pre);
    x->pre = NULL;
    if (rc) {
        x->kv->abort(x->txn);
        return rc;
    }
    return x->kv->commit(x->c, x->txn);
}

int kv_apply(struct store_client *c, const struct kv_ops *kv, void *db, const struct store_batch *b,
             uint64_t wm, struct store_res *res)
{
    struct kx x;
    int rc = begin(&x, c, kv, db, true);
    if (rc)
        return rc;
    x.b = b;
    rc = prologue(&x);
    for (size_t i = 0; rc == STORE_OK && i < b->n; i++)
        rc = exec_op(&x, &b->ops[i], res);
    if (rc == STORE_OK && wm)
        rc = raise_wm(&x, wm);
    return finish(&x, rc);
}

int kv_read(struct store_client *c, const struct kv_ops *kv, void *db, const struct store_op *o,
            const uint8_t *key, struct store_res *res)
{
    struct kx x;
    uint8_t dk[DK_MAX];
    struct meta m;
    struct store_batch b = {.bytes = (uint8_t *)key};
    struct store_op op = *o;
    op.koff = 0;
    int rc = begin(&x, c, kv, db, false);
    if (rc)
        return rc;
    x.b = &b;
    memset(res, 0, offsetof(struct store_res, buf));
    res->len = 0;
    if (!(rc = prologue(&x)) && !(rc = rec_find(&x, &op, res))) {
        size_t dl = k_data(dk, c->vertex, &op, key);
        if (!(rc = meta_load(&x, dk, dl, &m)) && !(rc = check_owner(&x, &op, &m)))
            rc = do_op(&x, dk, dl, &m, &op, res);
    }
    kv->abort(x.txn);
    return rc < 0 ? rc : STORE_OK;
}

int kv_epoch(struct store_client *c, const struct kv_ops *kv, void *db, uint64_t *epoch)
{
    struct kx x;
    struct slotent e;
    int rc = begin(&x, c, kv, db, false);
    if (rc)
        return rc;
    rc = slot_get(&x, c->slot, &e);
    *epoch = e.epoch;
    x.kv->abort(x.txn);
    return rc;
}

int kv_claim(struct store_client *c, const struct kv_ops *kv, void *db)
{
    struct kx x;
    struct slotent e;
    int rc = begin(&x, c, kv, db, true);
    if (rc)
        return rc;
    if ((rc = slot_get(&x, c->slot, &e)) == STORE_OK) {
        e.epoch++;
        rc = slot_put(&x, c->slot, &e);
    }
    if ((rc = finish(&x, rc)) == STORE_OK)
        c->epoch = e.epoch;
    return rc;
}

int kv_transfer(struct store_client *c, const struct kv_ops *kv, void *db, uint16_t from,
                uint16_t to)
{
    struct kx x;
    struct slotent ef, et;
    uint16_t r = 0;
    int rc = begin(&x, c, kv, db, true);
    if (rc)
        return rc;
    if ((rc = slot_get(&x, from, &ef)) || (rc = slot_get(&x, to, &et)) ||
        (rc = resolve(&x, to, &r)))
        return finish(&x, rc);
    if (ef.fwd != STORE_NO_SLOT)
        rc = store_errf(c, STORE_EINVAL, "slot %u was already transferred to %u", from, ef.fwd);
    else if (r != to && r != from)
        rc = store_errf(c, STORE_EINVAL, "slot %u was transferred to %u", to, r);
    else if (r == from) {
        /* Taking back a slot that had been handed to from: to becomes live again. */
        et.fwd = STORE_NO_SLOT;
        rc = slot_put(&x, to, &et);
    }
    if (rc == STORE_OK) {
        ef.fwd = to;
        ef.epoch++;
        rc = slot_put(&x, from, &ef);
    }
    return finish(&x, rc);
}

int kv_watermark(struct store_client *c, const struct kv_ops *kv, void *db, uint16_t slot,
                 uint64_t *w)
{
    struct kx x;
    uint8_t k[7];
    int rc = begin(&x, c, kv, db, false);
    if (rc)
        return rc;
    k_slot(k, 'w', c->vertex, slot);
    rc = get_u64(&x, k, 7, w);
    x.kv->abort(x.txn);
    return rc;
}

/* ---- store_scan ---- */

struct scanx {
    struct kx *x;
    store_scan_fn fn;
    void *arg;
};

/* One 'd' key: the object, or each element of a list. */
static int scan_one(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
    struct scanx *s = arg;
    struct kx *x = s->x;
    uint8_t ek[DK_MAX + 8];
    struct meta m;
    if (kl < 9 || kl != 9u + k[8])
        return store_errf(x->c, STORE_ECORRUPT, "object key of %zu bytes", kl);
    int rc = meta_parse(x, v, vl, &m);
    if (rc)
        return rc;
    struct store_obj o = {.scope = k[5],
                          .object = get16(k + 6),
                          .key = k + 9,
                          .klen = k[8],
                          .type = m.type,
                          .i = m.i,
                          .val = m.type == 's' ? m.bytes : NULL,
                          .len = m.type == 's' ? m.len : 0};
    if (m.type != 'l')
        return s->fn(s->arg, &o);
    o.nelem = m.tail - m.head;
    if (!o.nelem)
        return s->fn(s->arg, &o);
    for (uint64_t i = m.head; i < m.tail; i++) {
        size_t n;
        const uint8_t *p;
        if ((rc = x->kv->get(x->c, x->txn, ek, k_elem(ek, k, kl, i), &p, &n)))
            return rc < 0 ? rc : store_errf(x->c, STORE_ECORRUPT, "list element missing");
        o.val = p, o.len = n, o.elem = i - m.head;
        if ((rc = s->fn(s->arg, &o)))
            return rc;
    }
    return STORE_OK;
}

/* Objects are the 'd' keys of the vertex (list elements hang off them as 'e'
 * keys); everything else in the layout is bookkeeping. */
int kv_scan(struct store_client *c, const struct kv_ops *kv, void *db, store_scan_fn fn, void *arg)
{
    struct kx x;
    uint8_t pre[5] = {'d'};
    int rc = begin(&x, c, kv, db, false);
    if (rc)
        return rc;
    put32(pre + 1, c->vertex);
    struct scanx s = {.x = &x, .fn = fn, .arg = arg};
    rc = kv->walk(c, x.txn, pre, sizeof(pre), NULL, 0, scan_one, &s);
    kv->abort(x.txn);
    return rc;
}

int kv_trim(struct store_client *c, const struct kv_ops *kv, void *db, uint64_t g)
{
    struct kx x;
    uint8_t lo[17], hi[17], gk[5] = {'g'};
    uint64_t old;
    int rc = begin(&x, c, kv, db, true);
    if (rc)
        return rc;
    k_op(lo, 0, c->vertex, 0);
    k_op(hi, g, c->vertex, 0);
    put32(gk + 1, c->vertex);
    if ((rc = get_u64(&x, gk, 5, &old)) == STORE_OK && g > old)
        rc = kv->del_range(c, x.txn, lo, hi, 17);
    if (rc == STORE_OK && g > old)
        rc = put_u64(&x, gk, 5, g);
    return finish(&x, rc);
}

/* ---- store_client_asof ---- */

/* Records a walk visits in one read transaction. A reader pins every page
 * written after its snapshot: a walk over tens of thousands of records by a
 * slow process (a straggler, which is stopped most of the time) held LMDB's
 * free pages for seconds, and under the chain's commit rate the map filled
 * (1 GiB in one test run). Short transactions, each resuming after the last
 * key, let the pages go. */
#define SINCE_CHUNK 1024
#define SINCE_PAUSE 1 /* the walk's callback: the chunk is done (no error) */

struct sincex {
    struct kx *x;
    store_pre_fn fn;
    void *arg;
    unsigned n;
    uint8_t last[17]; /* the last key visited */
};

static int since_rec(struct sincex *s, struct store_client *c, const uint8_t *k, const uint8_t *v,
                     size_t vl);

/* One op record: passed on when it is a write of the client's slot to a per-flow
 * object (flags 4 and the writer slot). */
static int since_one(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
    struct sincex *s = arg;
    struct store_client *c = s->x->c;
    if (kl != 17 || vl < 14 || get32(v + 10) > vl - 14)
        return store_errf(c, STORE_ECORRUPT, "op record of %zu bytes", vl);
    memcpy(s->last, k, 17);
    int rc = since_rec(s, c, k, v, vl);
    return rc ? rc : ++s->n >= SINCE_CHUNK ? SINCE_PAUSE : STORE_OK;
}

static int since_rec(struct sincex *s, struct store_client *c, const uint8_t *k, const uint8_t *v,
                     size_t vl)
{
    if (!(v[1] & 4))
        return STORE_OK;
    const uint8_t *p = v + 14 + get32(v + 10), *end = v + vl;
    if (end - p < 6 || end - p < 6 + p[5] + 7)
        return store_errf(c, STORE_ECORRUPT, "op record's pre-image cut short");
    if (get16(p) != c->slot)
        return STORE_OK;
    struct store_pre pr = {.clock = rw_get_be64(k + 5),
                           .seq = get32(k + 13),
                           .scope = p[2],
                           .object = get16(p + 3),
                           .key = p + 6,
                           .klen = p[5]};
    p += 6 + pr.klen;
    pr.type = p[0];
    pr.owner = get16(p + 1);
    pr.len = get32(p + 3);
    pr.val = p + 7;
    if ((size_t)(end - pr.val) < pr.len || (pr.type == 'i' && pr.len != 8))
        return store_errf(c, STORE_ECORRUPT, "op record's pre-image cut short");
    if (pr.type == 'i')
        pr.i = (int64_t)rw_get_be64(pr.val), pr.len = 0;
    return s->fn(s->arg, &pr);
}

int kv_since(struct store_client *c, const struct kv_ops *kv, void *db, uint64_t w, store_pre_fn fn,
             void *arg)
{
    struct kx x;
    uint8_t pre[5] = {'o'}, from[17];
    put32(pre + 1, c->vertex);
    k_op(from, w, c->vertex, 0);
    struct sincex s = {.x = &x, .fn = fn, .arg = arg};
    int rc;
    do {
        if ((rc = begin(&x, c, kv, db, false)))
            return rc;
        s.n = 0;
        rc = kv->walk(c, x.txn, pre, sizeof(pre), from, 17, since_one, &s);
        kv->abort(x.txn);
        if (rc == SINCE_PAUSE) { /* resume just after the last key */
            memcpy(from, s.last, 17);
            int i = 16;
            while (i >= 0 && ++from[i] == 0)
                i--;
            if (i < 0)
                rc = STORE_OK; /* the last possible key: nothing after it */
        }
    } while (rc == SINCE_PAUSE);
    return rc;
}
