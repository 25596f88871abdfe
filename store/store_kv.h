/*
 * store_kv.h - the store's semantics over an ordered key-value transaction, shared
 * by the mem and LMDB backends so they cannot drift apart. A backend supplies the
 * transaction primitives; store_kv.c supplies emulation, ownership, fencing,
 * watermark and trim.
 */
#ifndef RW_STORE_KV_H
#define RW_STORE_KV_H

#include "store_int.h"

/* Called for one key and its value (both valid during the call only); a nonzero
 * return stops the walk and is returned by it. */
typedef int (*kv_walk_fn)(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl);

struct kv_ops {
    /* Starts a transaction on kv (write or read-only). */
    int (*begin)(struct store_client *c, void *kv, bool write, void **txn);
    /* 0 found (*v valid until the next write in txn), 1 absent, <0 error. */
    int (*get)(struct store_client *c, void *txn, const uint8_t *k, size_t kl, const uint8_t **v,
               size_t *vl);
    int (*put)(struct store_client *c, void *txn, const uint8_t *k, size_t kl, const uint8_t *v,
               size_t vl);
    /* Absent keys are not an error. */
    int (*del)(struct store_client *c, void *txn, const uint8_t *k, size_t kl);
    /* Deletes every key k with lo <= k < hi (memcmp order, equal lengths). */
    int (*del_range)(struct store_client *c, void *txn, const uint8_t *lo, const uint8_t *hi,
                     size_t len);
    int (*commit)(struct store_client *c, void *txn);
    void (*abort)(void *txn);
    /* Calls fn on every key that starts with the pl bytes p and is not below the
     * fl bytes from (NULL: from p), in memcmp order (a key before the longer keys
     * it is a prefix of, as LMDB orders them), as txn sees them. fn may get() in
     * txn but must not write. Returns STORE_OK, fn's first nonzero return, or a
     * STORE_E* error. */
    int (*walk)(struct store_client *c, void *txn, const uint8_t *p, size_t pl, const uint8_t *from,
                size_t fl, kv_walk_fn fn, void *arg);
};

int kv_apply(struct store_client *c, const struct kv_ops *kv, void *db, const struct store_batch *b,
             uint64_t wm, struct store_res *res);
int kv_epoch(struct store_client *c, const struct kv_ops *kv, void *db, uint64_t *epoch);
int kv_claim(struct store_client *c, const struct kv_ops *kv, void *db);
int kv_transfer(struct store_client *c, const struct kv_ops *kv, void *db, uint16_t from,
                uint16_t to);
int kv_watermark(struct store_client *c, const struct kv_ops *kv, void *db, uint16_t slot,
                 uint64_t *w);
int kv_trim(struct store_client *c, const struct kv_ops *kv, void *db, uint64_t g);
/* store_scan over the kv layout, in one read transaction. */
int kv_scan(struct store_client *c, const struct kv_ops *kv, void *db, store_scan_fn fn, void *arg);
/* The backends' read (store_int.h), in one read transaction. */
int kv_read(struct store_client *c, const struct kv_ops *kv, void *db, const struct store_op *o,
            const uint8_t *key, struct store_res *res);
/* The backends' since (store_int.h), in one read transaction. */
int kv_since(struct store_client *c, const struct kv_ops *kv, void *db, uint64_t w, store_pre_fn fn,
             void *arg);

#endif
