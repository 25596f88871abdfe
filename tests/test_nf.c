/*
 * test_nf.c - the nf part: an NF instance's local state (--no-ft), driven through
 * the API an NF uses (nf_push/nf_pop), with a test NF defined here.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "nf.h"
#include "testutil.h"

/* The test NF: packet with clock c pushes c; every third packet pops one and
 * checks it is the oldest not yet popped; a packet with sub 1 pops until empty. */
struct lists {
    uint32_t next_out, bad, popped;
    bool empty;
};

static const struct store_key pool = {
    .scope = STORE_SHARED, .object = 3, .bytes = "pool", .len = 4};

static int pop_one(struct lists *l, struct nf_env *env, bool *found)
{
    uint32_t v;
    size_t len;
    int rc = nf_pop(env, &pool, &v, sizeof(v), &len, found);
    if (rc || !*found)
        return rc;
    l->bad += len != sizeof(v) || v != l->next_out;
    l->next_out++;
    l->popped++;
    return 0;
}

static int lists_init(void *self, const struct chain_node *config, struct rw_err *e)
{
    (void)self, (void)config, (void)e;
    return 0;
}

static int lists_process(void *self, struct nf_env *env, const struct nf_pkt *p)
{
    struct lists *l = self;
    bool found = true;
    if (p->meta.sub == 1) {
        int rc = 0;
        while (!rc && found)
            rc = pop_one(l, env, &found);
        l->empty = !found;
        return rc;
    }
    uint32_t i = (uint32_t)p->meta.clock;
    int rc = nf_push(env, &pool, &i, sizeof(i));
    if (!rc && i % 3 == 2)
        rc = pop_one(l, env, &found);
    return rc;
}

/* The test NF's memory, as its init saw it. */
static struct lists *seen_self;
static int record_init(void *self, const struct chain_node *config, struct rw_err *e)
{
    (void)config, (void)e;
    seen_self = self;
    return 0;
}

static const struct nf_def lists_def = {.type = "lists",
                                        .self_size = sizeof(struct lists),
                                        .init = record_init,
                                        .process = lists_process};

static void test_local_lists(void)
{
    struct nf_inst *n = NULL;
    struct nf_inst_opts o = {.def = &lists_def, .name = "lists"};
    struct rw_err e = {0};
    CU_ASSERT_EQUAL_FATAL(nf_inst_open(&o, &n, &e), 0);
    uint8_t frame[64] = {0};
    for (uint32_t i = 0; i < 20000; i++) { /* pops interleaved: compaction happens */
        struct rw_meta m = {.clock = i};
        CU_ASSERT_EQUAL(nf_inst_process(n, &m, frame, sizeof(frame), sizeof(frame), NULL, &e), 0);
    }
    struct rw_meta drain = {.clock = 20000, .sub = 1};
    CU_ASSERT_EQUAL(nf_inst_process(n, &drain, frame, sizeof(frame), sizeof(frame), NULL, &e), 0);
    struct lists *l = seen_self;
    CU_ASSERT_EQUAL(l->bad, 0);
    CU_ASSERT_EQUAL(l->next_out, 20000);
    CU_ASSERT_TRUE(l->empty);
    nf_inst_close(n);
}

/* What an NF emits goes to the runtime's emit callback, sub numbered per input. */
static int count_emit(void *ctx, const struct rw_meta *in, uint16_t sub, const uint8_t *data,
                      uint32_t len, uint32_t wire_len, struct rw_err *e)
{
    (void)data, (void)len, (void)wire_len, (void)e;
    unsigned *subs = ctx;
    subs[sub & 7] = (unsigned)in->clock + 1;
    return 0;
}

static int echo_process(void *self, struct nf_env *env, const struct nf_pkt *p)
{
    (void)self;
    int rc = nf_emit(env, p->data, p->len, p->wire_len);
    return rc ? rc : nf_emit(env, p->data, p->len, p->wire_len);
}

static const struct nf_def echo_def = {
    .type = "echo", .self_size = 1, .init = lists_init, .process = echo_process};

static void test_emit_reaches_runtime(void)
{
    unsigned subs[8] = {0}, emitted = 0;
    struct nf_inst *n = NULL;
    struct nf_inst_opts o = {
        .def = &echo_def, .name = "echo", .emit = count_emit, .emit_ctx = subs};
    struct rw_err e = {0};
    CU_ASSERT_EQUAL_FATAL(nf_inst_open(&o, &n, &e), 0);
    uint8_t frame[64] = {0};
    struct rw_meta m = {.clock = 41};
    CU_ASSERT_EQUAL(nf_inst_process(n, &m, frame, sizeof(frame), sizeof(frame), &emitted, &e), 0);
    CU_ASSERT_EQUAL(emitted, 2);
    CU_ASSERT_EQUAL(subs[0], 42); /* sub 0 and 1: the input's two outputs, in emit order */
    CU_ASSERT_EQUAL(subs[1], 42);
    nf_inst_close(n);
}

static void add(CU_pSuite s)
{
    CU_add_test(s, "local lists pop in push order", test_local_lists);
    CU_add_test(s, "what an NF emits reaches the runtime, numbered", test_emit_reaches_runtime);
}

int main(void)
{
    return tu_main("nf", add);
}
