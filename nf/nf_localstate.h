/*
 * nf_localstate.h - in-process NF state for --no-ft (see nf_localstate.c). Internal to nf.
 */
#ifndef RW_LOCALSTATE_H
#define RW_LOCALSTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

struct lentry;

struct lstate {
    struct lentry **buckets;
    size_t nb, n;
};

int lstate_init(struct lstate *s);
void lstate_free(struct lstate *s);
int lstate_get(struct lstate *s, const struct store_key *k, void *buf, size_t cap, size_t *len,
               bool *found);
int lstate_put(struct lstate *s, const struct store_key *k, const void *val, size_t len);
int lstate_del(struct lstate *s, const struct store_key *k);
int lstate_incr(struct lstate *s, const struct store_key *k, int64_t delta, int64_t *result);
/* A list is a value of length-prefixed items; pop takes the first. */
int lstate_push(struct lstate *s, const struct store_key *k, const void *val, size_t len);
int lstate_pop(struct lstate *s, const struct store_key *k, void *buf, size_t cap, size_t *len,
               bool *found);

#endif
