/*
 * nat_who.c - NAT attribution: which inside endpoint held an external port at a
 * given time, from the nat.map / nat.unmap events of a run (README.md, Events).
 *
 * A week of events is millions of lines of RUN_DIR/alerts.json; reading them all
 * for each question would cost what the file costs. So the events are indexed
 * once, into RUN_DIR/nat-events.mdb (LMDB, 0600), keyed by external port,
 * protocol, time and the line's offset; a question is then one seek and a walk
 * over that port's events before the time asked. The index remembers how much of
 * alerts.json it holds and catches up when the file has grown (a run still
 * writing it); a file that shrank or no longer starts as it did (another run's)
 * is indexed again from scratch. Lines are parsed with json-c.
 */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "nfs.h"

#define KEY_LEN  19 /* port u16 BE | proto u8 | ts u64 BE | offset u64 BE */
#define HEAD_LEN 256

static int mdb_fail(struct rw_err *e, int rc, const char *what, const char *path)
{
    return rw_errf(e, rc == MDB_MAP_FULL || rc == ENOSPC ? RW_ENOSPC : RW_EIO, "%s: %s: %s", path,
                   what, mdb_strerror(rc));
}

static uint8_t proto_num(const char *p)
{
    return !strcmp(p, "tcp") ? 6 : !strcmp(p, "udp") ? 17 : !strcmp(p, "icmp") ? 1 : 0;
}

static const char *str_field(json_object *o, const char *k)
{
    json_object *v;
    return json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v)
               : NULL;
}

/* The port of "a.b.c.d:port"; 0 when there is none. */
static uint16_t port_of(const char *ep)
{
    const char *c = ep ? strrchr(ep, ':') : NULL;
    if (!c)
        return 0;
    char *end;
    unsigned long v = strtoul(c + 1, &end, 10);
    return *end || v > 65535 ? 0 : (uint16_t)v;
}

static void make_key(uint8_t k[KEY_LEN], uint16_t port, uint8_t proto, uint64_t ts, uint64_t off)
{
    k[0] = (uint8_t)(port >> 8), k[1] = (uint8_t)port, k[2] = proto;
    rw_put_be64(k + 3, ts);
    rw_put_be64(k + 11, off);
}

/* Indexes the events of alerts.json from byte `from` on; *upto: where the last
 * whole line ends. */
static int index_lines(MDB_txn *txn, MDB_dbi ev, FILE *f, uint64_t from, uint64_t *upto,
                       const char *path, struct rw_err *e)
{
    if (fseeko(f, (off_t)from, SEEK_SET))
        return rw_errf(e, RW_EIO, "%s: seek: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    uint64_t off = from;
    int rc = 0;
    json_tokener *tok = json_tokener_new();
    if (!tok)
        return rw_errf(e, RW_ENOMEM, "out of memory");
    while (!rc && (n = getline(&line, &cap, f)) > 0) {
        if (line[n - 1] != '\n')
            break; /* a line still being written: the next catch-up takes it */
        uint64_t at = off;
        off += (uint64_t)n;
        if (!strstr(line, "\"nat.map\"") && !strstr(line, "\"nat.unmap\""))
            continue;
        json_tokener_reset(tok);
        json_object *o = json_tokener_parse_ex(tok, line, (int)n);
        const char *type = o ? str_field(o, "type") : NULL;
        json_object *tsv;
        if (!type || (strcmp(type, "nat.map") && strcmp(type, "nat.unmap")) ||
            !json_object_object_get_ex(o, "ts", &tsv) || !str_field(o, "proto") ||
            !port_of(str_field(o, "external"))) {
            json_object_put(o);
            rc = rw_errf(e, RW_ECORRUPT, "%s: byte %llu: not a readable nat event: %.80s", path,
                         (unsigned long long)at, line);
            break;
        }
        uint8_t k[KEY_LEN];
        make_key(k, port_of(str_field(o, "external")), proto_num(str_field(o, "proto")),
                 (uint64_t)json_object_get_int64(tsv), at);
        json_object_put(o);
        MDB_val kv = {KEY_LEN, k}, vv = {(size_t)n - 1, line};
        int mrc = mdb_put(txn, ev, &kv, &vv, 0);
        if (mrc)
            rc = mdb_fail(e, mrc, "index", path);
    }
    json_tokener_free(tok);
    free(line);
    if (!rc && ferror(f))
        rc = rw_errf(e, RW_EIO, "%s: read: %s", path, strerror(errno));
    *upto = off;
    return rc;
}

/* Brings RUN_DIR/nat-events.mdb up to date with RUN_DIR/alerts.json. */
static int update_index(MDB_env *env, MDB_dbi *ev, const char *run_dir, struct rw_err *e)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/alerts.json", run_dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return rw_errf(e, errno == ENOENT ? RW_ENOENT : RW_EIO, "%s: %s", path, strerror(errno));
    struct stat st;
    uint8_t head[HEAD_LEN] = {0};
    size_t hn = fread(head, 1, sizeof(head), f);
    int rc = fstat(fileno(f), &st) ? rw_errf(e, RW_EIO, "%s: %s", path, strerror(errno)) : 0;
    MDB_txn *txn;
    MDB_dbi meta;
    int mrc = rc ? 0 : mdb_txn_begin(env, NULL, 0, &txn);
    if (mrc) {
        fclose(f);
        return mdb_fail(e, mrc, "begin", path);
    }
    if (rc) {
        fclose(f);
        return rc;
    }
    if ((mrc = mdb_dbi_open(txn, "events", MDB_CREATE, ev)) ||
        (mrc = mdb_dbi_open(txn, "meta", MDB_CREATE, &meta))) {
        mdb_txn_abort(txn);
        fclose(f);
        return mdb_fail(e, mrc, "open", path);
    }
    MDB_val k = {4, "done"}, v;
    uint64_t done = 0;
    if (!mdb_get(txn, meta, &k, &v) && v.mv_size == 8 + HEAD_LEN + 8) {
        done = rw_get_be64(v.mv_data);
        /* Another file (a shorter one, or one that starts otherwise): start over. */
        if (done > (uint64_t)st.st_size || rw_get_be64((uint8_t *)v.mv_data + 8 + HEAD_LEN) != hn ||
            memcmp((uint8_t *)v.mv_data + 8, head, HEAD_LEN)) {
            done = 0;
            if ((mrc = mdb_drop(txn, *ev, 0))) {
                mdb_txn_abort(txn);
                fclose(f);
                return mdb_fail(e, mrc, "reset", path);
            }
        }
    }
    uint64_t upto = done;
    if ((uint64_t)st.st_size > done)
        rc = index_lines(txn, *ev, f, done, &upto, path, e);
    fclose(f);
    if (!rc && upto != done) {
        uint8_t mv[8 + HEAD_LEN + 8];
        rw_put_be64(mv, upto);
        memcpy(mv + 8, head, HEAD_LEN);
        rw_put_be64(mv + 8 + HEAD_LEN, hn);
        MDB_val nv = {sizeof(mv), mv};
        if ((mrc = mdb_put(txn, meta, &k, &nv, 0)))
            rc = mdb_fail(e, mrc, "index", path);
    }
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    return (mrc = mdb_txn_commit(txn)) ? mdb_fail(e, mrc, "commit", path) : 0;
}

static uint64_t int_field(json_object *o, const char *k)
{
    json_object *v;
    return json_object_object_get_ex(o, k, &v) ? (uint64_t)json_object_get_int64(v) : 0;
}

static void copy_field(char *dst, size_t n, json_object *o, const char *k)
{
    const char *s = str_field(o, k);
    snprintf(dst, n, "%s", s ? s : "");
}

/* The NAT that wrote an event: its NF name and external address:port. */
static bool same_nat(json_object *a, json_object *b)
{
    const char *na = str_field(a, "nf"), *nb = str_field(b, "nf");
    const char *ea = str_field(a, "external"), *eb = str_field(b, "external");
    return na && nb && ea && eb && !strcmp(na, nb) && !strcmp(ea, eb);
}

static json_object *parse_val(json_tokener *tok, const MDB_val *v)
{
    json_tokener_reset(tok);
    return json_tokener_parse_ex(tok, v->mv_data, (int)v->mv_size);
}

/* Walks back from `at` over the events of (port, proto): the first event met of
 * each NAT decides whether it held the port then (a map: yes, from its time until
 * that NAT's next event of the port; an unmap: no). */
static int who_proto(MDB_txn *txn, MDB_dbi ev, uint16_t port, uint8_t proto, uint64_t at_ns,
                     struct nat_hold *out, size_t max, size_t *n, struct rw_err *e)
{
    MDB_cursor *cur, *fwd;
    int rc = mdb_cursor_open(txn, ev, &cur);
    if (rc)
        return rw_errf(e, RW_EIO, "nat index: %s", mdb_strerror(rc));
    if ((rc = mdb_cursor_open(txn, ev, &fwd))) {
        mdb_cursor_close(cur);
        return rw_errf(e, RW_EIO, "nat index: %s", mdb_strerror(rc));
    }
    uint8_t kb[KEY_LEN];
    make_key(kb, port, proto, at_ns == UINT64_MAX ? at_ns : at_ns + 1, 0);
    MDB_val k = {KEY_LEN, kb}, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    rc = rc == MDB_NOTFOUND ? mdb_cursor_get(cur, &k, &v, MDB_LAST)
                            : mdb_cursor_get(cur, &k, &v, MDB_PREV);
    json_object *seen[64];
    size_t nseen = 0;
    int ret = 0;
    json_tokener *tok = json_tokener_new();
    if (!tok)
        ret = rw_errf(e, RW_ENOMEM, "out of memory");
    for (; rc == 0 && !ret; rc = mdb_cursor_get(cur, &k, &v, MDB_PREV)) {
        /* Keys are port | proto | ts | offset: the first key of another port or
         * protocol ends the walk. */
        const uint8_t *kp = k.mv_data;
        if (k.mv_size != KEY_LEN || kp[0] != (port >> 8) || kp[1] != (port & 0xff) ||
            kp[2] != proto)
            break;
        json_object *o = parse_val(tok, &v);
        if (!o) {
            ret = rw_errf(e, RW_ECORRUPT, "nat index: an unreadable event");
            break;
        }
        bool known = false;
        for (size_t i = 0; i < nseen && !known; i++)
            known = same_nat(seen[i], o);
        if (known || nseen == sizeof(seen) / sizeof(seen[0])) {
            json_object_put(o);
            continue;
        }
        seen[nseen++] = o;
        const char *type = str_field(o, "type");
        if (!type || strcmp(type, "nat.map") || *n == max)
            continue; /* released at or before the time asked: not held then */
        struct nat_hold *h = &out[(*n)++];
        memset(h, 0, sizeof(*h));
        copy_field(h->proto, sizeof(h->proto), o, "proto");
        copy_field(h->internal, sizeof(h->internal), o, "internal");
        copy_field(h->external, sizeof(h->external), o, "external");
        copy_field(h->remote, sizeof(h->remote), o, "remote");
        copy_field(h->nf, sizeof(h->nf), o, "nf");
        h->from_ns = rw_get_be64(kp + 3);
        h->map_clock = int_field(o, "clock");
        /* Until: this NAT's next event of the port after the map. */
        MDB_val fk = k, fv;
        int frc = mdb_cursor_get(fwd, &fk, &fv, MDB_SET);
        for (frc = frc ? frc : mdb_cursor_get(fwd, &fk, &fv, MDB_NEXT); frc == 0;
             frc = mdb_cursor_get(fwd, &fk, &fv, MDB_NEXT)) {
            const uint8_t *fp = fk.mv_data;
            if (fk.mv_size != KEY_LEN || memcmp(fp, kp, 3))
                break;
            json_object *x = parse_val(tok, &fv);
            bool mine = x && same_nat(x, o);
            if (mine) {
                h->until_ns = rw_get_be64(fp + 3);
                h->released = true;
                copy_field(h->reason, sizeof(h->reason), x, "reason");
            }
            json_object_put(x);
            if (mine)
                break;
        }
    }
    if (tok)
        json_tokener_free(tok);
    for (size_t i = 0; i < nseen; i++)
        json_object_put(seen[i]);
    if (!ret && rc && rc != MDB_NOTFOUND)
        ret = rw_errf(e, RW_EIO, "nat index: %s", mdb_strerror(rc));
    mdb_cursor_close(fwd);
    mdb_cursor_close(cur);
    return ret;
}

int nat_who(const char *run_dir, uint16_t port, uint8_t proto, uint64_t at_ns, struct nat_hold *out,
            size_t max, size_t *n, struct rw_err *e)
{
    *n = 0;
    char path[4200];
    snprintf(path, sizeof(path), "%s/nat-events.mdb", run_dir);
    MDB_env *env;
    int rc = mdb_env_create(&env);
    if (rc)
        return mdb_fail(e, rc, "create", path);
    mdb_env_set_maxdbs(env, 4);
    mdb_env_set_mapsize(env, 64ull << 30); /* sparse: only what is written takes room */
    if ((rc = mdb_env_open(env, path, MDB_NOSUBDIR | MDB_NOSYNC, 0600))) {
        mdb_env_close(env);
        return rc == EACCES || rc == EROFS
                   ? rw_errf(e, RW_EIO, "%s: cannot write the index: %s", path, mdb_strerror(rc))
                   : mdb_fail(e, rc, "open", path);
    }
    MDB_dbi ev;
    if ((rc = update_index(env, &ev, run_dir, e))) {
        mdb_env_close(env);
        return rc;
    }
    MDB_txn *txn;
    if ((rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn))) {
        mdb_env_close(env);
        return mdb_fail(e, rc, "begin", path);
    }
    static const uint8_t all[] = {6, 17, 1};
    for (size_t i = 0; i < 3 && !rc; i++)
        if (!proto || proto == all[i])
            rc = who_proto(txn, ev, port, all[i], at_ns, out, max, n, e);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return rc;
}
