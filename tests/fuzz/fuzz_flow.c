/*
 * fuzz_flow.c - libFuzzer target: arbitrary frames through the flow parser and
 * arbitrary strings through the --flow syntax parser.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rw_flow.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rw_flow f, g;
    uint8_t *frame = malloc(size ? size : 1); /* exact size, so ASan sees overreads */
    memcpy(frame, data, size);
    if (rw_flow_parse(frame, size, &f))
        (void)rw_flow_hash(&f);
    free(frame);
    char s[300];
    struct rw_err e;
    size_t n = size < sizeof(s) - 1 ? size : sizeof(s) - 1;
    memcpy(s, data, n);
    s[n] = '\0';
    if (rw_flow_from_string(s, &g, &e) == 0)
        (void)rw_flow_hash(&g);
    return 0;
}
