/*
 * pcapng.h - a minimal pcapng writer (section header, one Ethernet interface
 * with nanosecond resolution, enhanced packet blocks with a comment), used by
 * replay and by the coordinator's quarantine file. Written by hand because
 * libpcap only writes classic pcap, and pcapng is what carries the clock to
 * Wireshark as a per-packet comment.
 */
#ifndef RW_PCAPNG_H
#define RW_PCAPNG_H

#include <stdint.h>
#include <stdio.h>

struct pcapng {
    FILE *f;
};

int pcapng_open(struct pcapng *w, const char *path);
int pcapng_write(struct pcapng *w, uint64_t ts_ns, uint32_t cap_len, uint32_t wire_len,
                 const uint8_t *data, const char *comment);
/* Returns 0 when every byte reached the file. */
int pcapng_close(struct pcapng *w);

#endif
