/*
 * store_mem.c - the `mem:` backend: an in-process hash map with an undo log, so
 * that unit tests exercise the same semantics (store_kv.c) as LMDB without files.
 * A batch is all or nothing here too: a failed op rolls the map back. Handles of
 * one `struct store` share the map; a mutex makes a transaction exclusive.
 */
#include "store_kv.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct ment {
    struct ment *next;
    uint8_t *v;
    size_t kl, vl;
    uint8_t k[];
};

struct undo {
    struct ment *saved; /* copy of the old entry, NULL if the key was absent */
    uint8_t *k;
    size_t kl;
};

struct memdb {
    pthread_mutex_t mu;
    struct ment **tab;
    size_t nb, n;
    /* The one transaction (the mutex makes it exclusive). */
    bool write;
    struct undo *u;
    size_t nu, cu;
};

static uint64_t hash(const uint8_t *k, size_t kl)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < kl; i++)
        h = (h ^ k[i]) * 1099511628211ull;
    return h;
}

static struct ment **find(struct memdb *db, const uint8_t *k, size_t kl)
{
    struct ment **pp = &db->tab[hash(k, kl) & (db->nb - 1)];
    while (*pp && ((*pp)->kl != kl || memcmp((*pp)->k, k, kl)))
        pp = &(*pp)->next;
    return pp;
}

static void grow(struct memdb *db)
{
    size_t nb = db->nb * 2;
    struct ment **t = calloc(nb, sizeof(*t));
    if (!t)
        return; /* a full table is slower, not wrong */
    for (size_t i = 0; i < db->nb; i++) {
        for (struct ment *e = db->tab[i], *nx; e; e = nx) {
            nx = e->next;
            struct ment **b = &t[hash(e->k, e->kl) & (nb - 1)];
            e->next = *b;
            *b = e;
        }
    }
    free(db->tab);
    db->tab = t;
    db->nb = nb;
}

/* Sets or removes (v NULL) a key without undo. */
static int raw_set(struct memdb *db, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
    struct ment **pp = find(db, k, kl), *e = *pp;
    if (!v) {
        if (e) {
            *pp = e->next;
            free(e->v);
            free(e);
            db->n--;
        }
        return STORE_OK;
    }
    uint8_t *nv = malloc(vl ? vl : 1);
    if (!nv)
        return STORE_ENOMEM;
    memcpy(nv, v, vl);
    if (!e) {
        if (!(e = malloc(sizeof(*e) + kl))) {
            free(nv);
            return STORE_ENOMEM;
        }
        memcpy(e->k, k, kl);
        e->kl = kl;
        e->v = NULL;
        e->next = *pp;
        *pp = e;
        if (++db->n > db->nb * 2)
            grow(db);
    }
    free(e->v);
    e->v = nv;
    e->vl = vl;
    return STORE_OK;
}

static int save_undo(struct store_client *c, struct memdb *db, const uint8_t *k, size_t kl)
{
    if (db->nu == db->cu) {
        size_t nc = db->cu ? db->cu * 2 : 64;
        struct undo *nu = realloc(db->u, nc * sizeof(*nu));
        if (!nu)
            return store_errf(c, STORE_ENOMEM, "mem: out of memory");
        db->u = nu;
        db->cu = nc;
    }
    struct ment *e = *find(db, k, kl);
    struct undo u = {.k = malloc(kl), .kl = kl};
    if (e && (u.saved = malloc(sizeof(*e) + 1)))
        u.saved->v = malloc(e->vl ? e->vl : 1);
    if (!u.k || (e && (!u.saved || !u.saved->v))) {
        free(u.k);
        if (u.saved)
            free(u.saved->v);
        free(u.saved);
        return store_errf(c, STORE_ENOMEM, "mem: out of memory");
    }
    memcpy(u.k, k, kl);
    if (e) {
        memcpy(u.saved->v, e->v, e->vl);
        u.saved->vl = e->vl;
    }
    db->u[db->nu++] = u;
    return STORE_OK;
}

static void undo_free(struct memdb *db, bool restore)
{
    while (db->nu) {
        struct undo *u = &db->u[--db->nu];
        if (restore)
            raw_set(db, u->k, u->kl, u->saved ? u->saved->v : NULL, u->saved ? u->saved->vl : 0);
        free(u->k);
        if (u->saved)
            free(u->saved->v);
        free(u->saved);
    }
}

static int m_begin(struct store_client *c, void *kv, bool write, void **txn)
{
    (void)c;
    struct memdb *db = kv;
    pthread_mutex_lock(&db->mu);
    db->write = write;
    *txn = db;
    return STORE_OK;
}

static int m_get(struct store_client *c, void *txn, const uint8_t *k, size_t kl, const uint8_t **v,
                 size_t *vl)
{
    (void)c;
    struct ment *e = *find(txn, k, kl);
    if (!e)
        return 1;
    *v = e->v;
    *vl = e->vl;
    return 0;
}

static int m_set(struct store_client *c, struct memdb *db, const uint8_t *k, size_t kl,
                 const uint8_t *v, size_t vl)
{
    int rc = save_undo(c, db, k, kl);
    if (rc == STORE_OK && raw_set(db, k, kl, v, vl))
        rc = store_errf(c, STORE_ENOMEM, "mem: out of memory");
    return rc;
}

static int m_put(struct store_client *c, void *txn, const uint8_t *k, size_t kl, const uint8_t *v,
                 size_t vl)
{
    static const uint8_t empty[1];
    return m_set(c, txn, k, kl, v ? v : empty, vl);
}

static int m_del(struct store_client *c, void *txn, const uint8_t *k, size_t kl)
{
    struct memdb *db = txn;
    if (!*find(db, k, kl))
        return STORE_OK;
    return m_set(c, db, k, kl, NULL, 0);
}

static int m_del_range(struct store_client *c, void *txn, const uint8_t *lo, const uint8_t *hi,
                       size_t len)
{
    struct memdb *db = txn;
    for (size_t i = 0; i < db->nb; i++) {
        for (struct ment *e = db->tab[i], *nx; e; e = nx) {
            nx = e->next;
            if (e->kl != len || memcmp(e->k, lo, len) < 0 || memcmp(e->k, hi, len) >= 0)
                continue;
            int rc = m_set(c, db, e->k, e->kl, NULL, 0);
            if (rc)
                return rc;
        }
    }
    return STORE_OK;
}

static int m_commit(struct store_client *c, void *txn)
{
    (void)c;
    struct memdb *db = txn;
    undo_free(db, false);
    pthread_mutex_unlock(&db->mu);
    return STORE_OK;
}

static void m_abort(void *txn)
{
    struct memdb *db = txn;
    undo_free(db, true);
    pthread_mutex_unlock(&db->mu);
}

/* memcmp order, a key before the longer keys it is a prefix of (LMDB's). */
static int by_key(const void *a, const void *b)
{
    const struct ment *x = *(const struct ment *const *)a, *y = *(const struct ment *const *)b;
    int c = memcmp(x->k, y->k, x->kl < y->kl ? x->kl : y->kl);
    return c ? c : (x->kl > y->kl) - (x->kl < y->kl);
}

/* A hash map has no order: the matching entries are gathered and sorted. */
static int m_walk(struct store_client *c, void *txn, const uint8_t *p, size_t pl,
                  const uint8_t *from, size_t fl, kv_walk_fn fn, void *arg)
{
    struct memdb *db = txn;
    struct ment **v = NULL;
    size_t n = 0, cap = 0;
    for (size_t i = 0; i < db->nb; i++) {
        for (struct ment *e = db->tab[i]; e; e = e->next) {
            if (e->kl < pl || memcmp(e->k, p, pl))
                continue;
            int cf = from ? memcmp(e->k, from, e->kl < fl ? e->kl : fl) : 0;
            if (cf < 0 || (cf == 0 && e->kl < fl))
                continue;
            if (n == cap) {
                struct ment **nv = realloc(v, (cap = cap ? cap * 2 : 64) * sizeof(*v));
                if (!nv) {
                    free(v);
                    return store_errf(c, STORE_ENOMEM, "mem: out of memory");
                }
                v = nv;
            }
            v[n++] = e;
        }
    }
    if (n)
        qsort(v, n, sizeof(*v), by_key);
    int rc = STORE_OK;
    for (size_t i = 0; rc == STORE_OK && i < n; i++)
        rc = fn(arg, v[i]->k, v[i]->kl, v[i]->v, v[i]->vl);
    free(v);
    return rc;
}

static const struct kv_ops mem_kv = {.begin = m_begin,
                                     .get = m_get,
                                     .put = m_put,
                                     .del = m_del,
                                     .del_range = m_del_range,
                                     .commit = m_commit,
                                     .abort = m_abort,
                                     .walk = m_walk};

static int mem_open(struct store *st, const char *rest, struct rw_err *e)
{
    if (*rest)
        return rw_errf(e, STORE_EURL, "mem: takes no arguments, got '%s'", rest);
    struct memdb *db = calloc(1, sizeof(*db));
    if (!db || !(db->tab = calloc(1024, sizeof(*db->tab)))) {
        free(db);
        return rw_errf(e, STORE_ENOMEM, "mem: out of memory");
    }
    db->nb = 1024;
    pthread_mutex_init(&db->mu, NULL);
    st->impl = db;
    return STORE_OK;
}

static void mem_close(struct store *st)
{
    struct memdb *db = st->impl;
    for (size_t i = 0; i < db->nb; i++) {
        for (struct ment *e = db->tab[i], *nx; e; e = nx) {
            nx = e->next;
            free(e->v);
            free(e);
        }
    }
    free(db->tab);
    free(db->u);
    pthread_mutex_destroy(&db->mu);
    free(db);
}

static int mem_client_open(struct store_client *c)
{
    c->impl = c->st->impl;
    return kv_epoch(c, &mem_kv, c->impl, &c->epoch);
}

static void mem_client_close(struct store_client *c)
{
    (void)c;
}

static int mem_apply(struct store_client *c, const struct store_batch *b, uint64_t wm, bool sync,
                     struct store_res *res)
{
    (void)sync;
    return kv_apply(c, &mem_kv, c->impl, b, wm, res);
}

static int mem_wait(struct store_client *c)
{
    (void)c;
    return STORE_OK;
}

static int mem_claim(struct store_client *c)
{
    return kv_claim(c, &mem_kv, c->impl);
}

static int mem_transfer(struct store_client *c, uint16_t from, uint16_t to)
{
    return kv_transfer(c, &mem_kv, c->impl, from, to);
}

static int mem_watermark(struct store_client *c, uint16_t slot, uint64_t *w)
{
    return kv_watermark(c, &mem_kv, c->impl, slot, w);
}

static int mem_trim(struct store_client *c, uint64_t g)
{
    return kv_trim(c, &mem_kv, c->impl, g);
}

static int mem_scan(struct store_client *c, store_scan_fn fn, void *arg)
{
    return kv_scan(c, &mem_kv, c->impl, fn, arg);
}

static int mem_read(struct store_client *c, const struct store_op *o, const uint8_t *key,
                    struct store_res *res)
{
    return kv_read(c, &mem_kv, c->impl, o, key, res);
}

static int mem_since(struct store_client *c, uint64_t w, store_pre_fn fn, void *arg)
{
    return kv_since(c, &mem_kv, c->impl, w, fn, arg);
}

/* A mem: store lives and dies with its process: no other run can have used it. */
static int mem_bind_run(struct store_client *c, const char *run, bool force)
{
    (void)c, (void)run, (void)force;
    return STORE_OK;
}

const struct store_backend store_be_mem = {
    mem_open,     mem_close,    mem_client_open, mem_client_close, mem_apply, mem_wait,
    mem_claim,    mem_transfer, mem_watermark,   mem_trim,         NULL,      NULL,
    mem_bind_run, mem_scan,     mem_read,        mem_since,
};
