/*
 * pktheap.h - packets held in (clock, sub) order: the sink's release queue and
 * a worker's merge of several input links. Internal to nfworker.
 */
#ifndef RW_PKTHEAP_H
#define RW_PKTHEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nfworker.h"

struct heap {
    struct link_pkt **a;
    size_t n, cap;
};

/* A copy of a link packet out of its slot (malloc'd), or NULL. */
struct link_pkt *held_copy(const struct link_pkt *p);
int heap_push(struct heap *h, struct link_pkt *x);
struct link_pkt *heap_pop(struct heap *h);
/* Frees every held packet and the array. */
void heap_clear(struct heap *h);

#endif
