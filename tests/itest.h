/*
 * itest.h - helpers for the integration tests that drive the `rewind` binary:
 * ingest a trace, export it, and compare captures packet by packet with libpcap.
 */
#ifndef RW_ITEST_H
#define RW_ITEST_H

#include <stdbool.h>
#include <sys/types.h>

#include "testutil.h"

/* rewind log ingest --log DIR --trace TRACE -q EXTRA; returns the exit code. */
int it_ingest(const char *scratch, const char *trace, const char *log, const char *extra);

/* rewind replay LOG --to-pcap OUT EXTRA; returns the exit code. */
int it_export(const char *scratch, const char *log, const char *out, const char *extra);

/* Compares packets a[ao..ao+n) with b[bo..bo+n): timestamps, lengths, bytes.
 * Returns the index of the first difference, or -1 when equal. */
long it_diff(const struct tu_pcap *a, size_t ao, const struct tu_pcap *b, size_t bo, size_t n,
             int check_ts);

/* What left a chain: OUT/output read back with the log API, packet by packet. */
struct it_pkt {
    uint64_t clock;
    uint16_t sub;
    uint32_t len;
    uint8_t *data;
};

struct it_outs {
    size_t n, cap;
    struct it_pkt *p;
};

void it_read_output(const char *run_dir, struct it_outs *o);
void it_free_outs(struct it_outs *o);
/* Same (clock, sub, bytes) sequence; says where they differ on stderr. */
bool it_same_outs(const struct it_outs *a, const struct it_outs *b);

/* Rewrites LOG's manifest as another rewind would have left it: its flow hash
 * version record set to `version`, or removed when version is 0 (a log written
 * before the record existed). Returns 0 or -1. */
int it_set_flow_hash(const char *log, uint32_t version);

/* Counts how many times a string occurs in a file. */
int it_file_has(const char *path, const char *needle);

/* `rewind worker` processes whose command line contains tag (-1 on error). */
int it_count_workers(const char *tag);

/* Starts a real redis-server on a free loopback port, its files in dir; returns
 * its pid (0 on failure) and the port in *port once it answers PING. */
pid_t it_redis_start(const char *dir, int *port);

/* Starts `sh -c cmd` in the background; returns its pid (the caller reaps it). */
pid_t it_spawn_sh(const char *cmd);

/* The last progress line (`--progress`: "run: N/T packets in, M out") in the file
 * err: packets in and out, or -1 each when there is none yet. */
void it_progress(const char *err, long *in, long *out);

/* Waits until that line shows at least min_in in and min_out out. Bounded (about
 * 120 s): the runs it watches are bounded by `timeout` themselves, after which
 * the line stops moving. Returns whether it got there. */
bool it_wait_progress(const char *err, long min_in, long min_out);

#endif
