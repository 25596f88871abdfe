/*
 * log_segment.c - one segment of the log: an LMDB environment with the block
 * table, its two indexes and its summary (see log.h for the layout).
 *
 * The summary lives inside the segment and is written in the same transaction
 * as the blocks it describes, so after any crash it matches what is there.
 */
#include "log_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

int log_mdb_err(struct rw_err *e, int rc, const char *what, const char *where)
{
    int code = RW_EIO;
    if (rc == MDB_MAP_FULL || rc == ENOSPC || rc == EDQUOT)
        code = RW_ENOSPC;
    else if (rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND || rc == MDB_INVALID ||
             rc == MDB_VERSION_MISMATCH)
        code = RW_ECORRUPT;
    else if (rc == ENOENT)
        code = RW_ENOENT;
    return rw_errf(e, code, "%s: %s: %s", where, what, mdb_strerror(rc));
}

int log_mdb_short_write(MDB_env *env, int rc)
{
    const char *path;
    struct statvfs vs;
    if (rc != EIO || mdb_env_get_path(env, &path) || statvfs(path, &vs))
        return rc;
    /* LMDB reports a short write as EIO: on a full filesystem it is ENOSPC. */
    return (uint64_t)vs.f_bavail * vs.f_frsize < (1u << 20) ? ENOSPC : rc;
}

void log_seg_path(char *buf, size_t n, const char *dir, uint32_t id)
{
    snprintf(buf, n, "%s/seg-%08u", dir, id);
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

void log_seg_info_encode(const struct log_seg_info *si, uint8_t out[LOG_SEG_INFO_LEN])
{
    uint64_t flags = (si->sealed ? 1u : 0u) | (si->ts_monotonic ? 2u : 0u);
    uint64_t f[11] = {si->id,        flags,       si->first_clock, si->last_clock, si->min_ts,
                      si->max_ts,    si->packets, si->blocks,      si->raw_bytes,  si->stored_bytes,
                      si->wire_bytes};
    for (int i = 0; i < 11; i++)
        put64(out + 8 * i, f[i]);
}

int log_seg_info_decode(const uint8_t *p, size_t len, struct log_seg_info *si)
{
    if (len != LOG_SEG_INFO_LEN)
        return RW_ECORRUPT;
    uint64_t f[11];
    for (int i = 0; i < 11; i++)
        f[i] = get64(p + 8 * i);
    if (f[0] > UINT32_MAX)
        return RW_ECORRUPT;
    si->id = (uint32_t)f[0];
    si->sealed = f[1] & 1;
    si->ts_monotonic = (f[1] & 2) != 0;
    si->first_clock = f[2];
    si->last_clock = f[3];
    si->min_ts = f[4];
    si->max_ts = f[5];
    si->packets = f[6];
    si->blocks = f[7];
    si->raw_bytes = f[8];
    si->stored_bytes = f[9];
    si->wire_bytes = f[10];
    si->ts_late = si->ts_monotonic ? 0 : LOG_LATE_UNKNOWN; /* the bound is kept beside */
    return 0;
}

static int open_dbis(struct log_seg *s, bool writer, const char *path, struct rw_err *e)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, writer ? 0 : MDB_RDONLY, &txn);
    if (rc)
        return log_mdb_err(e, rc, "begin", path);
    unsigned c = writer ? MDB_CREATE : 0;
    if ((rc = mdb_dbi_open(txn, "blocks", c, &s->blocks)) ||
        (rc = mdb_dbi_open(txn, "time", c, &s->time)) ||
        (rc = mdb_dbi_open(txn, "flow", c, &s->flow)) ||
        (rc = mdb_dbi_open(txn, "info", c, &s->info))) {
        mdb_txn_abort(txn);
        if (rc == MDB_NOTFOUND) /* created but never committed: an empty segment */
            return rw_errf(e, RW_ENOENT, "%s: segment has no tables yet", path);
        return log_mdb_err(e, rc, "open tables", path);
    }
    /* Segments written before the keys index have no such table: their queries
     * read every block. A writer that reopens such a segment creates the table,
     * which then has fewer filters than blocks: readers read the segment whole
     * (log_reader.c, keys_complete). */
    rc = mdb_dbi_open(txn, "keys", c, &s->keys);
    s->has_keys = rc == 0;
    if (rc && rc != MDB_NOTFOUND) {
        mdb_txn_abort(txn);
        return log_mdb_err(e, rc, "open tables", path);
    }
    rc = log_mdb_short_write(s->env, mdb_txn_commit(txn));
    return rc ? log_mdb_err(e, rc, "commit", path) : 0;
}

/* LMDB maps the file and trusts its meta page: pages past the end of a
 * truncated file fault the reader (SIGBUS) instead of failing a call. The meta
 * page says how many pages are in use, so a short file is caught here. */
static int check_size(MDB_env *env, const char *path, struct rw_err *e)
{
    MDB_envinfo info;
    MDB_stat ms;
    char f[4200];
    struct stat st;
    snprintf(f, sizeof(f), "%s/data.mdb", path);
    if (mdb_env_info(env, &info) || mdb_env_stat(env, &ms) || stat(f, &st))
        return 0; /* nothing to compare: the reads that follow report their own errors */
    uint64_t need = ((uint64_t)info.me_last_pgno + 1) * ms.ms_psize;
    if ((uint64_t)st.st_size >= need)
        return 0;
    return rw_errf(e, RW_ECORRUPT, "%s: truncated: %lld bytes, its pages need %llu", f,
                   (long long)st.st_size, (unsigned long long)need);
}

int log_seg_open(const char *dir, uint32_t id, bool writer, enum rw_durability dur,
                 uint64_t mapsize, struct log_seg *s, struct rw_err *e)
{
    char path[4096];
    log_seg_path(path, sizeof(path), dir, id);
    memset(s, 0, sizeof(*s));
    s->si.id = id;
    s->si.ts_monotonic = true;
    if (writer && mkdir(path, 0755) && errno != EEXIST)
        return rw_errf(e, errno == ENOSPC ? RW_ENOSPC : RW_EIO, "%s: mkdir: %s", path,
                       strerror(errno));
    int rc = mdb_env_create(&s->env);
    if (rc)
        return log_mdb_err(e, rc, "env create", path);
    mdb_env_set_maxdbs(s->env, 8);
    if (writer)
        mdb_env_set_mapsize(s->env, mapsize);
    unsigned flags = MDB_NORDAHEAD;
    if (!writer)
        flags |= MDB_RDONLY;
    else if (dur != RW_DUR_POWER)
        flags |= MDB_NOSYNC; /* the page cache survives a process crash */
    /* Readers of a live log (failover replays) may be killed mid-read: room for
     * many, and the slots of dead ones are reclaimed on every open. */
    mdb_env_set_maxreaders(s->env, 1024);
    rc = mdb_env_open(s->env, path, flags, 0644);
    if (rc) {
        mdb_env_close(s->env);
        s->env = NULL;
        return log_mdb_err(e, rc, "open", path);
    }
    int dead;
    mdb_reader_check(s->env, &dead);
    rc = check_size(s->env, path, e);
    if (!rc)
        rc = open_dbis(s, writer, path, e);
    if (rc) {
        mdb_env_close(s->env);
        s->env = NULL;
    }
    return rc;
}

void log_seg_close(struct log_seg *s)
{
    if (s->env)
        mdb_env_close(s->env);
    s->env = NULL;
}

int log_seg_load_info(struct log_seg *s, MDB_txn *txn, uint32_t id, struct rw_err *e)
{
    MDB_val k = {4, "info"}, v;
    int rc = mdb_get(txn, s->info, &k, &v);
    if (rc == MDB_NOTFOUND) {
        memset(&s->si, 0, sizeof(s->si));
        s->si.id = id;
        s->si.ts_monotonic = true;
        return 0;
    }
    if (rc)
        return log_mdb_err(e, rc, "read info", "segment");
    if (log_seg_info_decode(v.mv_data, v.mv_size, &s->si) || s->si.id != id)
        return rw_errf(e, RW_ECORRUPT, "segment %u: summary record is damaged", id);
    /* The time-order bound counts only if it covers every block: a build that
     * predates it appends blocks without updating it. */
    MDB_val lk = {4, "late"}, lv;
    if (!s->si.ts_monotonic && !mdb_get(txn, s->info, &lk, &lv) && lv.mv_size == LOG_LATE_LEN &&
        get64((const uint8_t *)lv.mv_data + 8) == s->si.blocks)
        s->si.ts_late = get64(lv.mv_data);
    return 0;
}

void log_seg_late_encode(const struct log_seg_info *si, uint8_t out[LOG_LATE_LEN])
{
    put64(out, si->ts_late);
    put64(out + 8, si->blocks);
}

int log_seg_remove(const char *dir, uint32_t id, struct rw_err *e)
{
    char path[4096], f[4200];
    log_seg_path(path, sizeof(path), dir, id);
    const char *names[] = {"data.mdb", "lock.mdb"};
    for (int i = 0; i < 2; i++) {
        snprintf(f, sizeof(f), "%s/%s", path, names[i]);
        if (unlink(f) && errno != ENOENT)
            return rw_errf(e, RW_EIO, "%s: %s", f, strerror(errno));
    }
    if (rmdir(path) && errno != ENOENT)
        return rw_errf(e, RW_EIO, "%s: %s", path, strerror(errno));
    return 0;
}
