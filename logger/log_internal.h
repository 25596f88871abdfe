/*
 * log_internal.h - what the logger's files share and nobody else sees: the
 * segment handle and the manifest (the LMDB side of the log's layout, log.h).
 */
#ifndef RW_LOG_INTERNAL_H
#define RW_LOG_INTERNAL_H

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

#define LOG_SEG_INFO_LEN 88
#define LOG_LATE_LEN     16 /* info table, key "late": u64 LE ts_late, u64 LE blocks covered */
#define LOG_MANIFEST     "manifest.mdb"
#define LOG_LOCK         "writer.lock"
#define LOG_CLOCK_BLOCK  (1ull << 16) /* clocks reserved at a time (design.md: A packet's life) */

struct log_seg {
    MDB_env *env;
    MDB_dbi blocks, time, flow, info;
    MDB_dbi keys;  /* host/port/protocol filters (log_keys.h) */
    bool has_keys; /* false in a segment written before the keys index */
    struct log_seg_info si;
};

struct log_manifest {
    MDB_env *env;
    MDB_dbi segs, meta;
    int lock_fd; /* a writer's flock on DIR/LOG_LOCK; -1 for a reader */
};

/* Paths and (de)serialisation. */
void log_seg_path(char *buf, size_t n, const char *dir, uint32_t id);
void log_seg_info_encode(const struct log_seg_info *si, uint8_t out[LOG_SEG_INFO_LEN]);
int log_seg_info_decode(const uint8_t *p, size_t len, struct log_seg_info *si);
void log_seg_late_encode(const struct log_seg_info *si, uint8_t out[LOG_LATE_LEN]);

/* Opens segment `id` of dir. Writers create it; readers open it read-only. */
int log_seg_open(const char *dir, uint32_t id, bool writer, enum rw_durability dur,
                 uint64_t mapsize, struct log_seg *s, struct rw_err *e);
void log_seg_close(struct log_seg *s);
/* Loads s->si from the segment's info table (zero info when it has none yet). */
int log_seg_load_info(struct log_seg *s, MDB_txn *txn, uint32_t id, struct rw_err *e);
/* Deletes a segment's files. */
int log_seg_remove(const char *dir, uint32_t id, struct rw_err *e);

/* The manifest: segment table, clock reservation and flow hash version; every
 * write is fsync'd. */
/* A writer first takes an exclusive flock on DIR/LOG_LOCK, held until close:
 * a second writer gets RW_EINVAL naming the holder's pid. An empty manifest
 * beside segments, or one LMDB cannot read, gives RW_ECORRUPT naming the file
 * and leaves nothing open or locked. */
int log_manifest_open(const char *dir, bool writer, struct log_manifest *m, struct rw_err *e);
void log_manifest_close(struct log_manifest *m);
int log_manifest_list(struct log_manifest *m, struct log_seg_info **out, uint32_t *n,
                      struct rw_err *e);
int log_manifest_put(struct log_manifest *m, const struct log_seg_info *si, struct rw_err *e);
int log_manifest_del(struct log_manifest *m, uint32_t id, struct rw_err *e);
int log_manifest_reserved(struct log_manifest *m, uint64_t *out, struct rw_err *e);
int log_manifest_reserve(struct log_manifest *m, uint64_t upto, struct rw_err *e);
/* The RW_FLOW_HASH_VERSION that built the log's flow filters; 0 when none is
 * recorded (a log written before version 2). */
int log_manifest_flow_hash(struct log_manifest *m, uint32_t *out, struct rw_err *e);
int log_manifest_set_flow_hash(struct log_manifest *m, uint32_t version, struct rw_err *e);

/* LMDB errors as rw codes (map full and disk full become RW_ENOSPC). */
int log_mdb_err(struct rw_err *e, int rc, const char *what, const char *where);
/* rc, or ENOSPC for an EIO (LMDB's word for a short write) while env's
 * filesystem has less than 1 MiB free. */
int log_mdb_short_write(MDB_env *env, int rc);

#endif
