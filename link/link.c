/*
 * link.c - the shared-memory link (see link.h for the design).
 *
 * The queues are DPDK's rte_ring, initialised in place inside the memfd with
 * rte_ring_init() and used with the single-producer/single-consumer calls; no
 * EAL is needed for that. Written here: only the region layout and the
 * sleep/wake handshake.
 */
#include "link.h"

#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <rte_ring.h>

/* ThreadSanitizer does not take the rings' fences (DPDK's generic memory model)
 * for synchronisation: tell it that a slot handed over through a ring is released
 * by the side that enqueues it and acquired by the side that dequeues it, so that
 * the slot's bytes are not reported as raced. Nothing in other builds. */
#if defined(__SANITIZE_THREAD__)
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define HANDED_OVER(p) __tsan_release(p)
#define TAKEN_OVER(p)  __tsan_acquire(p)
#else
#define HANDED_OVER(p) ((void)(p))
#define TAKEN_OVER(p)  ((void)(p))
#endif

#define LINK_MAGIC   0x4b4e4c52u /* "RLNK" */
#define LINK_VERSION 2
/* Slots on the free ring at the start; more are handed out only when the ring
 * runs dry (see link_alloc). */
#define LINK_WARM_SLOTS 32

/* The region's header, shared by both peers. */
struct link_shm {
    uint32_t magic, version;
    uint32_t slots, data_room, slot_size;
    _Atomic uint32_t generation;
    _Atomic uint32_t consumer_sleeps; /* set by a consumer about to sleep */
    _Atomic uint32_t fresh;           /* slots [fresh, slots) never used yet (producer's) */
    uint64_t filled_off, free_off, slots_off, size;
};

struct link {
    struct link_shm *shm;
    struct rte_ring *filled, *free;
    uint8_t *slots;
    int memfd, evfd;
    bool owner;
};

static size_t align64(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

static void layout(struct link_shm *h, uint32_t slots, uint32_t room)
{
    /* Each ring holds up to every slot number: a ring of 2*slots entries has room
     * for 2*slots-1 (an rte_ring keeps one entry empty). */
    size_t ring = align64((size_t)rte_ring_get_memsize(2 * slots));
    h->slots = slots;
    h->data_room = room;
    h->slot_size = (uint32_t)align64(sizeof(struct link_pkt) + room);
    h->filled_off = align64(sizeof(*h));
    h->free_off = h->filled_off + ring;
    h->slots_off = h->free_off + ring;
    h->size = h->slots_off + (uint64_t)slots * h->slot_size;
}

static void bind_region(struct link *l)
{
    uint8_t *base = (uint8_t *)l->shm;
    l->filled = (struct rte_ring *)(base + l->shm->filled_off);
    l->free = (struct rte_ring *)(base + l->shm->free_off);
    l->slots = base + l->shm->slots_off;
}

/* Rings rebuilt empty, the first slots on the free ring. Only the slots a link
 * ever needed at once circulate: the free ring is FIFO, so with every slot on it
 * a long run would cycle through all of them, and a chain's links (1,024 slots
 * of max_frame bytes each, thousands of links in a wide chain) would end up
 * backed by memory page by page whatever the traffic. */
static void init_rings(struct link *l)
{
    unsigned flags = RING_F_SP_ENQ | RING_F_SC_DEQ;
    rte_ring_init(l->filled, "rw_link_filled", 2 * l->shm->slots, flags);
    rte_ring_init(l->free, "rw_link_free", 2 * l->shm->slots, flags);
    uint32_t warm = l->shm->slots < LINK_WARM_SLOTS ? l->shm->slots : LINK_WARM_SLOTS;
    for (uint32_t i = 0; i < warm; i++)
        rte_ring_sp_enqueue(l->free, (void *)(uintptr_t)(i + 1));
    atomic_store(&l->shm->fresh, warm);
}

int link_create(const char *name, const struct link_opts *o, struct link **out, struct rw_err *e)
{
    if (o->slots < 2 || o->slots > 65536 || (o->slots & (o->slots - 1)) || !o->data_room ||
        o->data_room > (1u << 20))
        return rw_errf(e, RW_EINVAL, "link %s: slots must be a power of two in 2..65536", name);
    struct link *l = calloc(1, sizeof(*l));
    if (!l)
        return rw_errf(e, RW_ENOMEM, "out of memory");
    struct link_shm h = {0};
    layout(&h, o->slots, o->data_room);
    char mname[64];
    snprintf(mname, sizeof(mname), "rw-link-%s", name);
    l->memfd = memfd_create(mname, MFD_CLOEXEC);
    l->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (l->memfd < 0 || l->evfd < 0 || ftruncate(l->memfd, (off_t)h.size))
        goto fail;
    l->shm = mmap(NULL, h.size, PROT_READ | PROT_WRITE, MAP_SHARED, l->memfd, 0);
    if (l->shm == MAP_FAILED)
        goto fail;
    *l->shm = h;
    l->shm->magic = LINK_MAGIC;
    l->shm->version = LINK_VERSION;
    l->owner = true;
    bind_region(l);
    init_rings(l);
    *out = l;
    return 0;
fail:
    rw_errf(e, RW_EIO, "link %s: %s", name, strerror(errno));
    if (l->memfd >= 0)
        close(l->memfd);
    if (l->evfd >= 0)
        close(l->evfd);
    free(l);
    return RW_EIO;
}

int link_attach(int memfd, int evfd, struct link **out, struct rw_err *e)
{
    struct link_shm h;
    if (pread(memfd, &h, sizeof(h), 0) != (ssize_t)sizeof(h) || h.magic != LINK_MAGIC ||
        h.version != LINK_VERSION)
        return rw_errf(e, RW_EINVAL, "fd %d is not a rewind link", memfd);
    struct link *l = calloc(1, sizeof(*l));
    if (!l)
        return rw_errf(e, RW_ENOMEM, "out of memory");
    l->shm = mmap(NULL, h.size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    if (l->shm == MAP_FAILED) {
        free(l);
        return rw_errf(e, RW_EIO, "link: mmap: %s", strerror(errno));
    }
    l->memfd = memfd;
    l->evfd = evfd;
    bind_region(l);
    *out = l;
    return 0;
}

int link_memfd(const struct link *l)
{
    return l->memfd;
}

int link_eventfd(const struct link *l)
{
    return l->evfd;
}

uint32_t link_data_room(const struct link *l)
{
    return l->shm->data_room;
}

uint32_t link_generation(const struct link *l)
{
    return atomic_load(&l->shm->generation);
}

static struct link_pkt *slot(struct link *l, void *obj)
{
    uintptr_t i = (uintptr_t)obj - 1;
    if (i >= l->shm->slots) /* a number the region never handed out */
        return NULL;
    return (struct link_pkt *)(l->slots + i * l->shm->slot_size);
}

static void *slot_obj(struct link *l, struct link_pkt *p)
{
    return (void *)(uintptr_t)(((uint8_t *)p - l->slots) / l->shm->slot_size + 1);
}

struct link_pkt *link_alloc(struct link *l)
{
    void *obj;
    if (!rte_ring_sc_dequeue(l->free, &obj)) {
        struct link_pkt *p = slot(l, obj);
        TAKEN_OVER(p);
        return p;
    }
    /* The ring ran dry: a slot never used before, while there is one. A producer
     * killed between this and its send leaks that one slot, as it leaks one it
     * dequeued. */
    uint32_t f = atomic_load(&l->shm->fresh);
    if (f >= l->shm->slots)
        return NULL;
    atomic_store(&l->shm->fresh, f + 1);
    return slot(l, (void *)(uintptr_t)(f + 1));
}

void link_send(struct link *l, struct link_pkt *p)
{
    HANDED_OVER(p);
    rte_ring_sp_enqueue(l->filled, slot_obj(l, p));
    /* The consumer sets consumer_sleeps and re-checks the ring before sleeping;
     * the fence orders our enqueue before our read of the flag. */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_exchange(&l->shm->consumer_sleeps, 0)) {
        uint64_t one = 1;
        ssize_t r = write(l->evfd, &one, sizeof(one));
        (void)r; /* EAGAIN: the counter is already non-zero, the consumer will wake */
    }
}

struct link_pkt *link_recv(struct link *l)
{
    void *obj;
    if (rte_ring_sc_dequeue(l->filled, &obj))
        return NULL;
    struct link_pkt *p = slot(l, obj);
    TAKEN_OVER(p);
    return p;
}

void link_release(struct link *l, struct link_pkt *p)
{
    HANDED_OVER(p);
    rte_ring_sp_enqueue(l->free, slot_obj(l, p));
}

int link_wait(struct link *l, int timeout_ms)
{
    atomic_store(&l->shm->consumer_sleeps, 1);
    atomic_thread_fence(memory_order_seq_cst);
    if (!rte_ring_empty(l->filled)) { /* raced with a send: do not sleep */
        atomic_store(&l->shm->consumer_sleeps, 0);
        return 1;
    }
    struct pollfd pfd = {.fd = l->evfd, .events = POLLIN};
    int rc = poll(&pfd, 1, timeout_ms);
    if (rc < 0)
        return errno == EINTR ? 0 : -errno;
    uint64_t v;
    if (rc > 0 && read(l->evfd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        return -errno;
    atomic_store(&l->shm->consumer_sleeps, 0);
    return rc > 0 ? 1 : 0;
}

void link_reset(struct link *l)
{
    init_rings(l);
    atomic_store(&l->shm->consumer_sleeps, 0);
    atomic_fetch_add(&l->shm->generation, 1);
    uint64_t v;
    while (read(l->evfd, &v, sizeof(v)) > 0) /* drop a stale wake-up */
        ;
}

/* A peer killed inside rte_ring's enqueue or dequeue leaves its side's head
 * ahead of its tail. As the side's only user from now on, the replacement puts
 * the head back: a half-done dequeue is undone (the entries are still there,
 * since the other side waits for the tail), a half-done enqueue is dropped
 * (its entries were never published). */
static void heal(struct rte_ring_headtail *ht)
{
    ht->head = ht->tail;
}

void link_take_consumer(struct link *l)
{
    heal(&l->filled->cons);
    heal(&l->free->prod);
    atomic_store(&l->shm->consumer_sleeps, 0);
}

void link_take_producer(struct link *l)
{
    heal(&l->filled->prod);
    heal(&l->free->cons);
}

void link_close(struct link *l)
{
    if (!l)
        return;
    munmap(l->shm, l->shm->size);
    if (l->owner) {
        close(l->memfd);
        close(l->evfd);
    }
    free(l);
}

int link_wait_any(struct link **links, unsigned n, int timeout_ms)
{
    /* Every link, however many: one left out would not wake the consumer, whose
     * packets would wait out the timeout (it used to poll the first 64 only). */
    struct pollfd stack[64], *pfd = n <= 64 ? stack : malloc(n * sizeof(*pfd));
    if (!pfd)
        return -ENOMEM;
    for (unsigned i = 0; i < n; i++)
        atomic_store(&links[i]->shm->consumer_sleeps, 1);
    atomic_thread_fence(memory_order_seq_cst);
    int rc = 0;
    for (unsigned i = 0; i < n; i++)
        if (!rte_ring_empty(links[i]->filled))
            rc = 1; /* raced with a send: do not sleep */
    if (!rc) {
        for (unsigned i = 0; i < n; i++)
            pfd[i] = (struct pollfd){.fd = links[i]->evfd, .events = POLLIN};
        rc = poll(pfd, n, timeout_ms);
        if (rc < 0)
            rc = errno == EINTR ? 0 : -errno;
        uint64_t v;
        for (unsigned i = 0; rc > 0 && i < n; i++)
            if (pfd[i].revents & POLLIN && read(links[i]->evfd, &v, sizeof(v)) < 0 &&
                errno != EAGAIN)
                rc = -errno;
        rc = rc > 0 ? 1 : rc;
    }
    for (unsigned i = 0; i < n; i++)
        atomic_store(&links[i]->shm->consumer_sleeps, 0);
    if (pfd != stack)
        free(pfd);
    return rc;
}

struct link_pkt *link_alloc_wait(struct link *l, const volatile int *stop)
{
    struct link_pkt *p;
    while (!(p = link_alloc(l))) {
        if (stop && *stop)
            return NULL;
        struct timespec ts = {0, 20000};
        nanosleep(&ts, NULL);
    }
    return p;
}

int link_send_mark(struct link *l, uint64_t clock, const volatile int *stop)
{
    struct link_pkt *p = link_alloc_wait(l, stop);
    if (!p)
        return -1;
    memset(&p->meta, 0, sizeof(p->meta));
    p->meta.clock = clock;
    p->meta.flags = RW_F_MARK;
    p->len = p->wire_len = 0;
    p->sent_ns = 0;
    link_send(l, p);
    return 0;
}

unsigned link_count(const struct link *l)
{
    return rte_ring_count(l->filled);
}
