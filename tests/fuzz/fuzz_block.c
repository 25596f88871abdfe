/*
 * fuzz_block.c - libFuzzer target: arbitrary bytes as a stored log block. The
 * decoder reads what comes out of a possibly damaged file, so any input must be
 * refused or decoded without reading out of bounds. The CRC would reject almost
 * every mutation, so the target fixes it up first to reach the record parser.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "log_block.h"

static int count(void *ctx, const struct log_rec *r)
{
    volatile uint8_t sink = r->cap_len ? r->data[r->cap_len - 1] : 0;
    (void)sink;
    (*(uint64_t *)ctx)++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *v = malloc(size ? size : 1);
    memcpy(v, data, size);
    if (size >= LOG_BLOCK_HDR) { /* a valid CRC, so the records get parsed */
        memset(v + 20, 0, 4);
        uint32_t c = (uint32_t)crc32(crc32(0L, v, LOG_BLOCK_HDR), v + LOG_BLOCK_HDR,
                                     (uInt)(size - LOG_BLOCK_HDR));
        for (int i = 0; i < 4; i++)
            v[20 + i] = (uint8_t)(c >> (8 * i));
    }
    struct log_block_hdr h;
    struct rw_err e;
    if (log_block_check(v, size, &h, &e) == 0 && h.raw_len < (64u << 20)) {
        struct log_block_buf buf = {0};
        uint64_t n = 0;
        log_block_decode(v, size, &h, &buf, count, &n, &e);
        free(buf.p);
    }
    free(v);
    return 0;
}
