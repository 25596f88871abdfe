/*
 * log_manifest.c - the log's table of contents: which segments exist, their
 * clock and time ranges once sealed, the root's clock reservation, and which
 * flow hash built the flow index (a reader can only use the index if it computes
 * the same hash, rw_flow.h).
 *
 * It is a small LMDB file beside the segments. Every write is synced whatever
 * the log's durability mode: the reservation is what guarantees that a clock is
 * never handed out twice, and it is written once per 65536 packets, so the cost
 * is small. An open segment's live ranges are in the segment itself.
 */
#include "log_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* mkdir -p: an operator names a log under a directory that may not exist yet. */
static int make_dirs(const char *dir)
{
    char p[4096];
    snprintf(p, sizeof(p), "%s", dir);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0755) && errno != EEXIST)
            return -1;
        *s = '/';
    }
    return mkdir(p, 0755) && errno != EEXIST ? -1 : 0;
}

/* One writer per log: two would hand out the same clocks and collide on the same
 * keys. An flock is released by the kernel when its holder dies however it dies,
 * so a kill -9 never leaves the directory locked. The holder's pid is written in
 * the file only to name it in the refusal. */
static int lock_dir(const char *dir, int *out, struct rw_err *e)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, LOG_LOCK);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return rw_errf(e, errno == ENOSPC ? RW_ENOSPC : RW_EIO, "%s: open: %s", path,
                       strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB)) {
        int err = errno;
        char buf[32] = {0};
        ssize_t got = pread(fd, buf, sizeof(buf) - 1, 0);
        close(fd);
        if (err != EWOULDBLOCK)
            return rw_errf(e, RW_EIO, "%s: flock: %s", path, strerror(err));
        long pid = got > 0 ? strtol(buf, NULL, 10) : 0;
        return rw_errf(e, RW_EINVAL, "%s is being written by another rewind (pid %ld)", dir, pid);
    }
    char buf[32];
    int len = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) || pwrite(fd, buf, (size_t)len, 0) != len) {
        int err = errno;
        close(fd);
        return rw_errf(e, err == ENOSPC ? RW_ENOSPC : RW_EIO, "%s: write: %s", path, strerror(err));
    }
    *out = fd;
    return 0;
}

/* Whether DIR holds any segment directory: an empty manifest beside segments
 * has lost the table that says which clocks are taken, and must not be taken
 * for a new log (that would hand out clocks the segments already hold). */
static bool has_segments(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return false;
    bool any = false;
    for (struct dirent *de; !any && (de = readdir(d));)
        any = !strncmp(de->d_name, "seg-", 4);
    closedir(d);
    return any;
}

int log_manifest_open(const char *dir, bool writer, struct log_manifest *m, struct rw_err *e)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, LOG_MANIFEST);
    memset(m, 0, sizeof(*m));
    m->lock_fd = -1;
    if (writer && make_dirs(dir))
        return rw_errf(e, errno == ENOSPC ? RW_ENOSPC : RW_EIO, "%s: mkdir: %s", dir,
                       strerror(errno));
    int ret = writer ? lock_dir(dir, &m->lock_fd, e) : 0;
    if (ret)
        return ret;
    struct stat st;
    bool exists = !stat(path, &st);
    if (!writer && !exists)
        return rw_errf(e, RW_ENOENT, "%s: not a rewind log (no %s)", dir, LOG_MANIFEST);
    /* LMDB takes a 0-byte file for a new environment (and fails read-only with
     * EBADF); a crash while a new log is created can leave one, but only with no
     * segment beside it. A writer that made a new manifest beside segments would
     * hand out clocks they already hold. */
    bool empty = exists && st.st_size == 0;
    if (empty || (writer && !exists)) {
        if (empty && !writer)
            ret = rw_errf(e, RW_ECORRUPT,
                          "%s is empty (0 bytes): the list of the log's segments is lost", path);
        else if (has_segments(dir))
            ret = rw_errf(e, RW_ECORRUPT,
                          "%s is %s but %s holds segments: the list of the log's segments and "
                          "its clock reservation are lost; refusing to write (a new manifest "
                          "would hand out clocks the segments hold)",
                          path, empty ? "empty (0 bytes)" : "missing", dir);
        if (ret)
            goto unlock;
    }
    int rc = mdb_env_create(&m->env);
    if (rc) {
        ret = log_mdb_err(e, rc, "env create", path);
        goto unlock;
    }
    mdb_env_set_maxdbs(m->env, 4);
    mdb_env_set_mapsize(m->env, 16u << 20);
    mdb_env_set_maxreaders(m->env, 1024); /* as the segments: readers may be killed */
    rc = mdb_env_open(m->env, path, MDB_NOSUBDIR | (writer ? 0 : MDB_RDONLY), 0644);
    if (rc)
        goto fail;
    int dead;
    mdb_reader_check(m->env, &dead);
    MDB_txn *txn;
    if ((rc = mdb_txn_begin(m->env, NULL, writer ? 0 : MDB_RDONLY, &txn)))
        goto fail;
    unsigned c = writer ? MDB_CREATE : 0;
    if ((rc = mdb_dbi_open(txn, "segments", c, &m->segs)) ||
        (rc = mdb_dbi_open(txn, "meta", c, &m->meta))) {
        mdb_txn_abort(txn);
        goto fail;
    }
    if ((rc = mdb_txn_commit(txn)))
        goto fail;
    return 0;
fail:
    mdb_env_close(m->env);
    m->env = NULL;
    ret = log_mdb_err(e, rc, "open", path);
unlock:
    if (m->lock_fd >= 0)
        close(m->lock_fd);
    m->lock_fd = -1;
    return ret;
}

void log_manifest_close(struct log_manifest *m)
{
    if (m->env)
        mdb_env_close(m->env);
    m->env = NULL;
    if (m->lock_fd >= 0)
        close(m->lock_fd);
    m->lock_fd = -1;
}

int log_manifest_list(struct log_manifest *m, struct log_seg_info **out, uint32_t *n,
                      struct rw_err *e)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    *out = NULL;
    *n = 0;
    int rc = mdb_txn_begin(m->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return log_mdb_err(e, rc, "begin", LOG_MANIFEST);
    if ((rc = mdb_cursor_open(txn, m->segs, &cur))) {
        mdb_txn_abort(txn);
        return log_mdb_err(e, rc, "cursor", LOG_MANIFEST);
    }
    size_t cap = 0;
    int ret = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            struct log_seg_info *q = realloc(*out, cap * sizeof(*q));
            if (!q) {
                ret = rw_errf(e, RW_ENOMEM, "manifest: out of memory");
                break;
            }
            *out = q;
        }
        if (log_seg_info_decode(v.mv_data, v.mv_size, &(*out)[*n])) {
            ret = rw_errf(e, RW_ECORRUPT, "%s: segment entry %u is damaged", LOG_MANIFEST, *n);
            break;
        }
        (*n)++;
    }
    if (!ret && rc != MDB_NOTFOUND)
        ret = log_mdb_err(e, rc, "read", LOG_MANIFEST);
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    if (ret) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return ret;
}

/* One put or delete in its own synced transaction. */
static int write_one(struct log_manifest *m, MDB_dbi dbi, MDB_val *k, MDB_val *v, struct rw_err *e)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(m->env, NULL, 0, &txn);
    if (rc)
        return log_mdb_err(e, rc, "begin", LOG_MANIFEST);
    rc = v ? mdb_put(txn, dbi, k, v, 0) : mdb_del(txn, dbi, k, NULL);
    if (rc && !(rc == MDB_NOTFOUND && !v)) {
        mdb_txn_abort(txn);
        return log_mdb_err(e, rc, "write", LOG_MANIFEST);
    }
    rc = log_mdb_short_write(m->env, mdb_txn_commit(txn));
    return rc ? log_mdb_err(e, rc, "commit", LOG_MANIFEST) : 0;
}

int log_manifest_put(struct log_manifest *m, const struct log_seg_info *si, struct rw_err *e)
{
    uint8_t kb[4] = {(uint8_t)(si->id >> 24), (uint8_t)(si->id >> 16), (uint8_t)(si->id >> 8),
                     (uint8_t)si->id};
    uint8_t vb[LOG_SEG_INFO_LEN];
    log_seg_info_encode(si, vb);
    MDB_val k = {4, kb}, v = {sizeof(vb), vb};
    return write_one(m, m->segs, &k, &v, e);
}

int log_manifest_del(struct log_manifest *m, uint32_t id, struct rw_err *e)
{
    uint8_t kb[4] = {(uint8_t)(id >> 24), (uint8_t)(id >> 16), (uint8_t)(id >> 8), (uint8_t)id};
    MDB_val k = {4, kb};
    return write_one(m, m->segs, &k, NULL, e);
}

/* One meta value of exactly len bytes into out; *found is false when it is absent. */
static int get_meta(struct log_manifest *m, const char *key, uint8_t *out, size_t len, bool *found,
                    const char *what, struct rw_err *e)
{
    MDB_txn *txn;
    MDB_val k = {strlen(key), (void *)key}, v;
    *found = false;
    int rc = mdb_txn_begin(m->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return log_mdb_err(e, rc, "begin", LOG_MANIFEST);
    rc = mdb_get(txn, m->meta, &k, &v);
    *found = rc == 0;
    if (rc == 0 && v.mv_size == len)
        memcpy(out, v.mv_data, len);
    else if (rc == 0)
        rc = MDB_CORRUPTED;
    mdb_txn_abort(txn);
    if (rc && rc != MDB_NOTFOUND)
        return log_mdb_err(e, rc, what, LOG_MANIFEST);
    return 0;
}

int log_manifest_reserved(struct log_manifest *m, uint64_t *out, struct rw_err *e)
{
    uint8_t vb[8];
    bool found;
    int rc = get_meta(m, "clock_reserved", vb, sizeof(vb), &found, "read clock reservation", e);
    *out = !rc && found ? rw_get_be64(vb) : 0;
    return rc;
}

int log_manifest_flow_hash(struct log_manifest *m, uint32_t *out, struct rw_err *e)
{
    uint8_t vb[4];
    bool found;
    int rc = get_meta(m, "flow_hash", vb, sizeof(vb), &found, "read flow hash version", e);
    *out = !rc && found ? rw_get_be32(vb) : 0;
    return rc;
}

int log_manifest_set_flow_hash(struct log_manifest *m, uint32_t version, struct rw_err *e)
{
    uint8_t vb[4] = {(uint8_t)(version >> 24), (uint8_t)(version >> 16), (uint8_t)(version >> 8),
                     (uint8_t)version};
    MDB_val k = {9, "flow_hash"}, v = {4, vb};
    return write_one(m, m->meta, &k, &v, e);
}

int log_manifest_reserve(struct log_manifest *m, uint64_t upto, struct rw_err *e)
{
    uint8_t vb[8];
    rw_put_be64(vb, upto);
    MDB_val k = {14, "clock_reserved"}, v = {8, vb};
    return write_one(m, m->meta, &k, &v, e);
}
