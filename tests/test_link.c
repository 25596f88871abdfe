/*
 * test_link.c - the shared-memory link between processes: ordered, intact
 * delivery with sleeping consumers; a peer killed with SIGKILL never takes the
 * survivor down, and after link_reset a replacement carries on; closing leaves
 * no descriptor behind.
 */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "link.h"
#include "testutil.h"

static struct link *make(uint32_t slots)
{
    struct link_opts o = {.slots = slots, .data_room = 2048};
    struct link *l = NULL;
    struct rw_err e;
    CU_ASSERT_EQUAL_FATAL(link_create("test", &o, &l, &e), 0);
    return l;
}

/* Packet `clock` carries len = 60 + clock % 1400 bytes of a clock-derived pattern. */
static void fill(struct link_pkt *p, uint64_t clock)
{
    memset(&p->meta, 0, sizeof(p->meta));
    p->meta.clock = clock;
    p->meta.sub = (uint16_t)(clock & 7);
    p->len = p->wire_len = 60 + (uint32_t)(clock % 1400);
    for (uint32_t i = 0; i < p->len; i++)
        p->data[i] = (uint8_t)(clock * 31 + i);
}

static bool intact(const struct link_pkt *p)
{
    if (p->len != 60 + p->meta.clock % 1400 || p->meta.sub != (p->meta.clock & 7))
        return false;
    for (uint32_t i = 0; i < p->len; i++)
        if (p->data[i] != (uint8_t)(p->meta.clock * 31 + i))
            return false;
    return true;
}

/* Sends clocks [from, to); waits (short sleeps) when the link is full. Gives up
 * after `patience` full-link waits in a row (the peer is gone). */
static uint64_t send_range(struct link *l, uint64_t from, uint64_t to, int patience)
{
    uint64_t c = from;
    int waits = 0;
    while (c < to && waits < patience) {
        struct link_pkt *p = link_alloc(l);
        if (!p) {
            waits++;
            usleep(1000);
            continue;
        }
        waits = 0;
        fill(p, c++);
        link_send(l, p);
    }
    return c;
}

/* Child consumer: reads until clock `last`, checks order and bytes, exits 0 if
 * all were intact and in order; counts sleeps so the wake path is used. */
static void consumer_child(struct link *l, uint64_t first, uint64_t last, int report_fd)
{
    uint64_t want = first, sleeps = 0;
    while (want <= last) {
        struct link_pkt *p = link_recv(l);
        if (!p) {
            if (link_wait(l, 2000) == 0)
                _exit(3); /* nothing for 2 s */
            sleeps++;
            continue;
        }
        if (p->meta.clock != want || !intact(p))
            _exit(2);
        want++;
        link_release(l, p);
    }
    if (report_fd >= 0 && write(report_fd, &sleeps, sizeof(sleeps)) != sizeof(sleeps))
        _exit(4);
    _exit(0);
}

static void test_ordered_intact_with_wakeups(void)
{
    struct link *l = make(256);
    int fds[2];
    CU_ASSERT_EQUAL_FATAL(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        consumer_child(l, 0, 99999, fds[1]);
    }
    close(fds[1]);
    CU_ASSERT_EQUAL(send_range(l, 0, 50000, 5000), 50000);
    /* the consumer drains the link (and then sleeps until the next send) */
    for (int i = 0; i < 20000 && link_count(l); i++)
        usleep(1000);
    CU_ASSERT_EQUAL(send_range(l, 50000, 100000, 5000), 100000);
    int st;
    waitpid(pid, &st, 0);
    CU_ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    uint64_t sleeps = 0;
    CU_ASSERT_EQUAL(read(fds[0], &sleeps, sizeof(sleeps)), (ssize_t)sizeof(sleeps));
    CU_ASSERT_TRUE(sleeps >= 1); /* it slept, and a send woke it */
    close(fds[0]);
    link_close(l);
}

static void test_consumer_killed(void)
{
    struct link *l = make(64);
    pid_t pid = fork();
    if (pid == 0) { /* a consumer that takes a little and then hangs */
        for (int n = 0; n < 10;) {
            struct link_pkt *p = link_recv(l);
            if (p) {
                n++;
                link_release(l, p);
            }
        }
        pause();
        _exit(0);
    }
    uint64_t sent = send_range(l, 0, 100000, 50); /* fills the link, then gives up */
    CU_ASSERT_TRUE(sent >= 10 && sent < 100000);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    CU_ASSERT_PTR_NULL(link_alloc(l)); /* still full: the dead peer's slots */
    uint32_t gen = link_generation(l);
    link_reset(l);
    CU_ASSERT_EQUAL(link_generation(l), gen + 1);
    pid = fork();
    if (pid == 0)
        consumer_child(l, 500000, 520000 - 1, -1);
    CU_ASSERT_EQUAL(send_range(l, 500000, 520000, 5000), 520000);
    int st;
    waitpid(pid, &st, 0);
    CU_ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0); /* only the new packets, in order */
    link_close(l);
}

static void test_producer_killed(void)
{
    struct link *l = make(128);
    pid_t pid = fork();
    if (pid == 0) {
        send_range(l, 0, UINT64_MAX, 1 << 30);
        _exit(0);
    }
    uint64_t want = 0;
    while (want < 20000) { /* read a while, then the producer dies mid-stream */
        struct link_pkt *p = link_recv(l);
        if (!p)
            continue;
        CU_ASSERT_TRUE_FATAL(p->meta.clock == want && intact(p));
        want++;
        link_release(l, p);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    struct link_pkt *p;
    while ((p = link_recv(l))) { /* what it published before dying is whole */
        CU_ASSERT_TRUE(p->meta.clock == want && intact(p));
        want++;
        link_release(l, p);
    }
    CU_ASSERT_EQUAL(link_wait(l, 50), 0); /* and then nothing, without hanging */
    link_reset(l);
    pid = fork();
    if (pid == 0) {
        send_range(l, 7000000, 7001000, 5000);
        _exit(0);
    }
    for (uint64_t c = 7000000; c < 7001000;) {
        p = link_recv(l);
        if (!p) {
            link_wait(l, 1000);
            continue;
        }
        CU_ASSERT_TRUE_FATAL(p->meta.clock == c && intact(p));
        c++;
        link_release(l, p);
    }
    waitpid(pid, NULL, 0);
    link_close(l);
}

/* A consumer of many links (an NF behind 64-instance NFs on two edges) is woken by
 * a packet on any of them: it used to look at the first 64 only, so a packet on the
 * 100th waited out the whole timeout (0 returned instead of 1). */
static void test_wait_any_sees_every_link(void)
{
    enum { N = 100 };
    struct link *l[N];
    for (int i = 0; i < N; i++)
        l[i] = make(16);
    CU_ASSERT_EQUAL(link_wait_any(l, N, 0), 0); /* nothing yet */
    struct link_pkt *p = link_alloc(l[N - 1]);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    p->meta = (struct rw_meta){.clock = 7};
    p->len = p->wire_len = 0;
    link_send(l[N - 1], p);
    CU_ASSERT_EQUAL(link_wait_any(l, N, 10000), 1);
    struct link_pkt *got = link_recv(l[N - 1]);
    CU_ASSERT_TRUE(got && got->meta.clock == 7);
    if (got)
        link_release(l[N - 1], got);
    for (int i = 0; i < N; i++)
        link_close(l[i]);
}

static void test_no_leaks(void)
{
    int before = tu_count_dir("/proc/self/fd");
    for (int i = 0; i < 50; i++)
        link_close(make(16));
    CU_ASSERT_EQUAL(tu_count_dir("/proc/self/fd"), before);
    struct link_opts bad = {.slots = 100, .data_room = 2048};
    struct link *l;
    struct rw_err e;
    CU_ASSERT_EQUAL(link_create("bad", &bad, &l, &e), RW_EINVAL);
    CU_ASSERT_EQUAL(link_attach(0, -1, &l, &e), RW_EINVAL); /* stdin is no link */
}

/* Only the slots a link needed at once circulate, so its memory follows its
 * depth, not its size: 10,000 packets one at a time use few slots; a burst of
 * 500 in flight takes 500, and the link still fills to every slot. Before, the
 * FIFO free ring cycled through all 1,024 slots whatever the depth. */
static void test_slots_follow_depth(void)
{
    struct link *l = make(1024);
    uint8_t used[1024] = {0};
    struct link_pkt *p0 = link_alloc(l), *p1 = link_alloc(l); /* slots 0 and 1 */
    CU_ASSERT_TRUE_FATAL(p0 && p1 && p1 > p0);
    size_t stride = (size_t)((uint8_t *)p1 - (uint8_t *)p0);
    link_release(l, p0);
    link_release(l, p1);
    unsigned distinct = 0;
    for (uint64_t c = 0; c < 10000; c++) {
        struct link_pkt *p = link_alloc(l);
        CU_ASSERT_PTR_NOT_NULL_FATAL(p);
        size_t i = (size_t)((uint8_t *)p - (uint8_t *)p0) / stride;
        if (i < 1024 && !used[i]++)
            distinct++;
        fill(p, c);
        link_send(l, p);
        struct link_pkt *q = link_recv(l);
        CU_ASSERT_TRUE(q && intact(q));
        link_release(l, q);
    }
    CU_ASSERT_TRUE(distinct <= 64);
    struct link_pkt *held[1024];
    unsigned n = 0;
    while (n < 1024 && (held[n] = link_alloc(l)))
        n++;
    CU_ASSERT_EQUAL(n, 1024); /* a full link still holds every slot */
    for (unsigned i = 0; i < n; i++)
        link_release(l, held[i]);
    link_close(l);
}

static void add(CU_pSuite s)
{
    CU_add_test(s, "packets arrive in order and intact; a sleeping consumer is woken",
                test_ordered_intact_with_wakeups);
    CU_add_test(s, "a killed consumer never blocks the producer; reset serves a new one",
                test_consumer_killed);
    CU_add_test(s, "a killed producer leaves only whole packets; reset serves a new one",
                test_producer_killed);
    CU_add_test(s, "closing leaves no descriptors; bad links are refused", test_no_leaks);
    CU_add_test(s, "a consumer of 100 links is woken by a packet on the last",
                test_wait_any_sees_every_link);
    CU_add_test(s, "only the slots a link needed at once circulate", test_slots_follow_depth);
}

int main(void)
{
    return tu_main("link", add);
}
