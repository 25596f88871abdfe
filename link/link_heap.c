/*
 * link_heap.c - packets held in (clock, sub) order: a binary min-heap, because
 * the sink releases and a merging worker processes the lowest clock first.
 */
#include "link.h"

#include <stdlib.h>
#include <string.h>

static bool before(const struct link_pkt *x, const struct link_pkt *y)
{
    return x->meta.clock < y->meta.clock ||
           (x->meta.clock == y->meta.clock && x->meta.sub < y->meta.sub);
}

struct link_pkt *link_pkt_copy(const struct link_pkt *p)
{
    struct link_pkt *x = malloc(sizeof(*x) + p->len);
    if (!x)
        return NULL;
    x->meta = p->meta;
    x->sent_ns = p->sent_ns;
    x->len = p->len;
    x->wire_len = p->wire_len;
    memcpy(x->data, p->data, p->len);
    return x;
}

int link_heap_push(struct link_heap *h, struct link_pkt *x)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 1024;
        struct link_pkt **a = realloc(h->a, cap * sizeof(*a));
        if (!a)
            return RW_ENOMEM;
        h->a = a;
        h->cap = cap;
    }
    size_t i = h->n++;
    for (; i && before(x, h->a[(i - 1) / 2]); i = (i - 1) / 2)
        h->a[i] = h->a[(i - 1) / 2];
    h->a[i] = x;
    return 0;
}

struct link_pkt *link_heap_pop(struct link_heap *h)
{
    struct link_pkt *top = h->a[0], *last = h->a[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && before(h->a[c + 1], h->a[c]))
            c++;
        if (!before(h->a[c], last))
            break;
        h->a[i] = h->a[c];
        i = c;
    }
    if (h->n)
        h->a[i] = last;
    return top;
}

void link_heap_clear(struct link_heap *h)
{
    while (h->n)
        free(link_heap_pop(h));
    free(h->a);
    h->a = NULL;
    h->cap = 0;
}
