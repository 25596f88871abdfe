/*
 * fuzz_nf.c - libFuzzer target: arbitrary packets through every NF of the
 * catalog, in-process with local state (nf_local). Byte 0 picks the NF; then
 * packets as (u16 big-endian length, bytes), up to 32, with increasing clocks and
 * times, so state carries from one packet to the next (a malformed packet after a
 * well-formed one is the interesting case). An NF may drop or pass anything; it
 * may not crash, read out of bounds or leak.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chain.h"
#include "nfs.h"

/* NFs whose config has required keys get this one; the others run on defaults. */
static const char *config_of(const char *type)
{
    if (!strcmp(type, "lb"))
        return "nfs:\n  - {name: x, type: lb, config: {vip: 10.0.0.1, port: 80, "
               "backends: [10.0.1.1, 10.0.1.2]}}\n";
    return NULL;
}

static void run(const char *type, const uint8_t *data, size_t size)
{
    const struct nf_def *def = nf_find(type);
    struct chain *c = NULL;
    struct rw_err e;
    const char *yaml = config_of(type);
    if (yaml && chain_parse(yaml, strlen(yaml), "fuzz.yaml", NULL, &c, &e))
        return;
    struct nf_local *l;
    if (nf_local_open(def, c ? c->nfs[0].config : NULL, &l, &e) == 0) {
        struct rw_meta m = {.ts_ns = 1795343910000000000ull};
        for (int n = 0; n < 32 && size >= 2; n++) {
            size_t len = (size_t)(data[0] << 8 | data[1]);
            data += 2, size -= 2;
            len = len < size ? len : size;
            uint8_t *pkt = malloc(len ? len : 1); /* exact size: ASan sees overreads */
            memcpy(pkt, data, len);
            unsigned emitted;
            nf_local_process(l, &m, pkt, (uint32_t)len, &emitted);
            free(pkt);
            data += len, size -= len;
            m.clock++;
            m.ts_ns += 1000000ull << (n % 12); /* gaps up to seconds: timeouts happen */
        }
        nf_local_close(l);
    }
    if (c)
        chain_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *const *types = nf_types();
    size_t n = 0;
    while (types[n])
        n++;
    run(types[data[0] % n], data + 1, size - 1);
    return 0;
}
