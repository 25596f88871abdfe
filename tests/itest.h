/*
 * itest.h - helpers for the integration tests that drive the `rewind` binary:
 * ingest a trace, export it, and compare captures packet by packet with libpcap.
 */
#ifndef RW_ITEST_H
#define RW_ITEST_H

#include "testutil.h"

/* rewind log ingest --log DIR --trace TRACE -q EXTRA; returns the exit code. */
int it_ingest(const char *scratch, const char *trace, const char *log, const char *extra);

/* rewind replay LOG --to-pcap OUT EXTRA; returns the exit code. */
int it_export(const char *scratch, const char *log, const char *out, const char *extra);

/* Compares packets a[ao..ao+n) with b[bo..bo+n): timestamps, lengths, bytes.
 * Returns the index of the first difference, or -1 when equal. */
long it_diff(const struct tu_pcap *a, size_t ao, const struct tu_pcap *b, size_t bo, size_t n,
             int check_ts);

/* Counts how many times a string occurs in a file. */
int it_file_has(const char *path, const char *needle);

#endif
