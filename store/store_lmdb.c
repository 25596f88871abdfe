/*
 * store_lmdb.c - the `lmdb:PATH[?map=MiB]` backend: one LMDB environment shared
 * by the worker processes of a host. LMDB serialises writers with a robust
 * process-shared mutex, so a batch is one write transaction and a writer killed
 * mid-transaction neither blocks nor corrupts the others (its transaction simply
 * never commits). Environments are opened per process: open the store after
 * fork(), never before (LMDB forbids using an environment across fork).
 *
 * Durability: MDB_NOSYNC, so a commit reaches the page cache (survives a process
 * crash, design.md: Invariants `process`), not the disk; power loss is the log's business.
 * MDB_WRITEMAP: a commit writes into the map instead of pwrite()ing each dirty
 * page, which makes a sync op (one write transaction) about 4x cheaper. Pages
 * are still copied on write, so a writer killed mid-transaction leaves the last
 * commit intact.
 */
#include "store_kv.h"

#include <errno.h>
#include <lmdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct lmdb_st {
    MDB_env *env;
    MDB_dbi dbi, recs;
    size_t map_mib;
    char path[4096];
    _Atomic uint64_t writes; /* write transactions begun (l_begin checks readers) */
};

static int lerr(struct store_client *c, int mrc, const char *what)
{
    const struct lmdb_st *l = c->st->impl;
    if (mrc == MDB_MAP_FULL) /* the operator's remedy, in the operator's words */
        return store_errf(c, STORE_EFULL,
                          "lmdb:%s is full (its map is %zu MiB): give it more room with "
                          "?map=MiB in the store URL",
                          l->path, l->map_mib);
    return store_errf(c, STORE_EBACKEND, "lmdb %s: %s", what, mdb_strerror(mrc));
}

/* How often a writer clears the reader slots of dead processes: every this
 * many write transactions of a process. A worker killed inside a read
 * transaction (a chaos kill, a retired straggler, the OOM killer) leaves its
 * slot holding that snapshot: LMDB then reuses no page freed after it, and
 * under the chain's commit rate the map filled (1 GiB in a test run) long
 * before anyone opened the store again, until now the only time it was
 * checked. A check probes each reader's process (a lock test): some
 * microseconds. */
#define READER_CHECK_EVERY 64

static int l_begin(struct store_client *c, void *kv, bool write, void **txn)
{
    struct lmdb_st *l = kv;
    if (write &&
        atomic_fetch_add_explicit(&l->writes, 1, memory_order_relaxed) % READER_CHECK_EVERY == 0) {
        int dead;
        mdb_reader_check(l->env, &dead);
    }
    int mrc = mdb_txn_begin(l->env, NULL, write ? 0 : MDB_RDONLY, (MDB_txn **)txn);
    return mrc ? lerr(c, mrc, "txn_begin") : STORE_OK;
}

/* Op records ('o' keys) live in a DB of their own: they are most of the data,
 * and a client's records arrive in key order, so they can be appended. The dbi
 * numbers are fixed by the order lmdb_open opens them in (checked there). */
enum { DBI_MAIN = 1, DBI_RECS = 2 };

static MDB_dbi dbi_of(const uint8_t *k)
{
    return k[0] == 'o' ? DBI_RECS : DBI_MAIN;
}

static int l_get(struct store_client *c, void *txn, const uint8_t *k, size_t kl, const uint8_t **v,
                 size_t *vl)
{
    MDB_val key = {kl, (void *)k}, val;
    int mrc = mdb_get(txn, dbi_of(k), &key, &val);
    if (mrc == MDB_NOTFOUND)
        return 1;
    if (mrc)
        return lerr(c, mrc, "get");
    *v = val.mv_data;
    *vl = val.mv_size;
    return 0;
}

static int l_put(struct store_client *c, void *txn, const uint8_t *k, size_t kl, const uint8_t *v,
                 size_t vl)
{
    MDB_val key = {kl, (void *)k}, val = {vl, (void *)v};
    int mrc = k[0] == 'o' ? mdb_put(txn, DBI_RECS, &key, &val, MDB_APPEND) : MDB_KEYEXIST;
    if (mrc == MDB_KEYEXIST)
        mrc = mdb_put(txn, dbi_of(k), &key, &val, 0);
    return mrc ? lerr(c, mrc, "put") : STORE_OK;
}

static int l_del(struct store_client *c, void *txn, const uint8_t *k, size_t kl)
{
    MDB_val key = {kl, (void *)k};
    int mrc = mdb_del(txn, dbi_of(k), &key, NULL);
    return mrc && mrc != MDB_NOTFOUND ? lerr(c, mrc, "del") : STORE_OK;
}

static int l_del_range(struct store_client *c, void *txn, const uint8_t *lo, const uint8_t *hi,
                       size_t len)
{
    MDB_cursor *cur;
    MDB_val key = {len, (void *)lo}, val;
    int mrc = mdb_cursor_open(txn, dbi_of(lo), &cur);
    if (mrc)
        return lerr(c, mrc, "cursor_open");
    mrc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
    while (mrc == 0 && key.mv_size == len && memcmp(key.mv_data, hi, len) < 0) {
        if ((mrc = mdb_cursor_del(cur, 0)))
            break;
        /* Seek again: after the DB's last key is deleted, MDB_GET_CURRENT answers
         * EINVAL, not MDB_NOTFOUND (trim often deletes every record). */
        key = (MDB_val){len, (void *)lo};
        mrc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
    }
    mdb_cursor_close(cur);
    return mrc && mrc != MDB_NOTFOUND ? lerr(c, mrc, "trim") : STORE_OK;
}

static int l_commit(struct store_client *c, void *txn)
{
    int mrc = mdb_txn_commit(txn);
    return mrc ? lerr(c, mrc, "commit") : STORE_OK;
}

static void l_abort(void *txn)
{
    mdb_txn_abort(txn);
}

/* A cursor from the first key >= p (MDB_SET_RANGE) while keys start with p. */
static int l_walk(struct store_client *c, void *txn, const uint8_t *p, size_t pl,
                  const uint8_t *from, size_t fl, kv_walk_fn fn, void *arg)
{
    MDB_cursor *cur;
    MDB_val key = {from ? fl : pl, (void *)(from ? from : p)}, val;
    int mrc = mdb_cursor_open(txn, dbi_of(p), &cur), rc = STORE_OK;
    if (mrc)
        return lerr(c, mrc, "cursor_open");
    mrc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
    while (mrc == 0 && key.mv_size >= pl && !memcmp(key.mv_data, p, pl)) {
        if ((rc = fn(arg, key.mv_data, key.mv_size, val.mv_data, val.mv_size)))
            break;
        mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (rc)
        return rc;
    return mrc && mrc != MDB_NOTFOUND ? lerr(c, mrc, "scan") : STORE_OK;
}

static const struct kv_ops lmdb_kv = {.begin = l_begin,
                                      .get = l_get,
                                      .put = l_put,
                                      .del = l_del,
                                      .del_range = l_del_range,
                                      .commit = l_commit,
                                      .abort = l_abort,
                                      .walk = l_walk};

static int parse_path(const char *rest, char *path, size_t cap, size_t *map_mib, struct rw_err *e)
{
    const char *q = strchr(rest, '?');
    size_t n = q ? (size_t)(q - rest) : strlen(rest);
    if (n == 0 || n >= cap)
        return rw_errf(e, STORE_EURL, "lmdb: URL needs a directory path");
    memcpy(path, rest, n);
    path[n] = 0;
    *map_mib = 1024;
    if (q) {
        char *end;
        if (strncmp(q, "?map=", 5) || (*map_mib = strtoul(q + 5, &end, 10)) == 0 || *end)
            return rw_errf(e, STORE_EURL, "lmdb: option '%s' not understood (?map=MiB)", q);
    }
    return STORE_OK;
}

static int lmdb_open(struct store *st, const char *rest, struct rw_err *e)
{
    char path[4096];
    size_t map_mib = 1024;
    int rc = parse_path(rest, path, sizeof(path), &map_mib, e);
    if (rc)
        return rc;
    if (mkdir(path, 0775) && errno != EEXIST)
        return rw_errf(e, STORE_EBACKEND, "lmdb: mkdir %s: %s", path, strerror(errno));
    struct lmdb_st *l = calloc(1, sizeof(*l));
    if (!l)
        return rw_errf(e, STORE_ENOMEM, "lmdb: out of memory");
    MDB_txn *txn = NULL;
    int mrc, dead;
    if ((mrc = mdb_env_create(&l->env)) || (mrc = mdb_env_set_mapsize(l->env, map_mib << 20)) ||
        (mrc = mdb_env_set_maxreaders(l->env, 1024)) || (mrc = mdb_env_set_maxdbs(l->env, 4)) ||
        (mrc = mdb_env_open(l->env, path, MDB_NOSYNC | MDB_NOTLS | MDB_WRITEMAP, 0664)) ||
        (mrc = mdb_reader_check(l->env, &dead)) || (mrc = mdb_txn_begin(l->env, NULL, 0, &txn)) ||
        (mrc = mdb_dbi_open(txn, NULL, 0, &l->dbi)) ||
        (mrc = mdb_dbi_open(txn, "oprecs", MDB_CREATE, &l->recs)) || (mrc = mdb_txn_commit(txn))) {
        rc = rw_errf(e, mrc == MDB_MAP_FULL ? STORE_EFULL : STORE_EBACKEND, "lmdb %s: %s", path,
                     mdb_strerror(mrc));
        if (l->env)
            mdb_env_close(l->env);
        free(l);
        return rc;
    }
    if (l->dbi != DBI_MAIN || l->recs != DBI_RECS) {
        unsigned dbi = l->recs;
        mdb_env_close(l->env);
        free(l);
        return rw_errf(e, STORE_EBACKEND, "lmdb %s: unexpected dbi %u", path, dbi);
    }
    l->map_mib = map_mib;
    snprintf(l->path, sizeof(l->path), "%s", path);
    st->impl = l;
    return STORE_OK;
}

static void lmdb_close(struct store *st)
{
    struct lmdb_st *l = st->impl;
    mdb_env_close(l->env);
    free(l);
}

static int lmdb_client_open(struct store_client *c)
{
    c->impl = c->st->impl;
    return kv_epoch(c, &lmdb_kv, c->impl, &c->epoch);
}

static void lmdb_client_close(struct store_client *c)
{
    (void)c;
}

static int lmdb_apply(struct store_client *c, const struct store_batch *b, uint64_t wm, bool sync,
                      struct store_res *res)
{
    (void)sync;
    return kv_apply(c, &lmdb_kv, c->impl, b, wm, res);
}

static int lmdb_wait(struct store_client *c)
{
    (void)c;
    return STORE_OK;
}

static int lmdb_claim(struct store_client *c)
{
    return kv_claim(c, &lmdb_kv, c->impl);
}

static int lmdb_transfer(struct store_client *c, uint16_t from, uint16_t to)
{
    return kv_transfer(c, &lmdb_kv, c->impl, from, to);
}

static int lmdb_watermark(struct store_client *c, uint16_t slot, uint64_t *w)
{
    return kv_watermark(c, &lmdb_kv, c->impl, slot, w);
}

static int lmdb_trim(struct store_client *c, uint64_t g)
{
    return kv_trim(c, &lmdb_kv, c->impl, g);
}

static int lmdb_scan(struct store_client *c, store_scan_fn fn, void *arg)
{
    return kv_scan(c, &lmdb_kv, c->impl, fn, arg);
}

static int lmdb_read(struct store_client *c, const struct store_op *o, const uint8_t *key,
                     struct store_res *res)
{
    return kv_read(c, &lmdb_kv, c->impl, o, key, res);
}

static int lmdb_since(struct store_client *c, uint64_t w, store_pre_fn fn, void *arg)
{
    return kv_since(c, &lmdb_kv, c->impl, w, fn, arg);
}

/* The run marker: a key no store op makes. The main DB also holds the name of
 * the op-record DB (LMDB keeps named DBs there): state is a key that starts
 * like a store op's (kv's layout: d, e, s, w, g), or any op record. */
static const uint8_t RUN_KEY[] = {'R', 'U', 'N'};

static bool state_key(const MDB_val *k)
{
    return k->mv_size > 0 && strchr("degsw", *(const char *)k->mv_data);
}

/* Counts the state keys of the main DB, deleting them when clear is set. */
static int main_state(MDB_txn *txn, bool clear, size_t *n)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int mrc = mdb_cursor_open(txn, DBI_MAIN, &cur);
    *n = 0;
    if (mrc)
        return mrc;
    mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (!mrc) {
        bool del = state_key(&k) && (++*n, clear);
        if (del && (mrc = mdb_cursor_del(cur, 0)))
            break;
        /* after a delete, seek again (see l_del_range) */
        mrc = mdb_cursor_get(cur, &k, &v, del ? MDB_FIRST : MDB_NEXT);
    }
    mdb_cursor_close(cur);
    return mrc == MDB_NOTFOUND ? 0 : mrc;
}

static int lmdb_bind_run(struct store_client *c, const char *run, bool force)
{
    struct lmdb_st *l = c->st->impl;
    MDB_txn *txn;
    MDB_stat rs;
    MDB_val k = {sizeof(RUN_KEY), (void *)RUN_KEY}, v;
    size_t objs = 0;
    int mrc = mdb_txn_begin(l->env, NULL, 0, &txn);
    if (mrc)
        return lerr(c, mrc, "txn_begin");
    int marker = mdb_get(txn, DBI_MAIN, &k, &v);
    if ((marker && marker != MDB_NOTFOUND && (mrc = marker)) ||
        (mrc = mdb_stat(txn, DBI_RECS, &rs)) || (mrc = main_state(txn, false, &objs))) {
        mdb_txn_abort(txn);
        return lerr(c, mrc, "bind");
    }
    bool used = !marker || objs || rs.ms_entries;
    if (used && !force) {
        char who[256];
        snprintf(who, sizeof(who), "%.*s", marker ? 30 : (int)v.mv_size,
                 marker ? "written by an earlier rewind" : (const char *)v.mv_data);
        mdb_txn_abort(txn);
        return store_errf(c, STORE_EINUSE,
                          "lmdb:%s holds the state of another run (%s); runs must not mix: give "
                          "the chain another store path, delete that directory, or --force to "
                          "clear it",
                          l->path, who);
    }
    v = (MDB_val){strlen(run), (void *)run};
    if ((used && (mrc = main_state(txn, true, &objs))) ||
        (used && (mrc = mdb_drop(txn, DBI_RECS, 0))) || (mrc = mdb_put(txn, DBI_MAIN, &k, &v, 0))) {
        mdb_txn_abort(txn);
        return lerr(c, mrc, "bind");
    }
    return (mrc = mdb_txn_commit(txn)) ? lerr(c, mrc, "commit") : STORE_OK;
}

const struct store_backend store_be_lmdb = {
    lmdb_open,     lmdb_close,    lmdb_client_open, lmdb_client_close, lmdb_apply, lmdb_wait,
    lmdb_claim,    lmdb_transfer, lmdb_watermark,   lmdb_trim,         NULL,       NULL,
    lmdb_bind_run, lmdb_scan,     lmdb_read,        lmdb_since,
};
