/*
 * testutil.h - helpers shared by rewind's CUnit tests: running the real binary,
 * scratch directories, and reading pcaps back with libpcap (never with rewind's
 * own reader, so a round trip is checked against an independent implementation).
 */
#ifndef RW_TESTUTIL_H
#define RW_TESTUTIL_H

#include <CUnit/CUnit.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Runs one CUnit registry built by `add` and exits non-zero on any failure.
 * RW_TEST=WORDS in the environment runs only the tests whose name holds WORDS.
 * Arguments (read from /proc/self/cmdline, so main needs none): `--list` prints
 * the tests' names, one a line, and runs nothing; `--case NAME` runs only the test
 * named exactly NAME (how ctest runs each test as an entry of its own). */
int tu_main(const char *suite, void (*add)(CU_pSuite));

/* Whether the program was asked for --list (a main with costly setup before
 * tu_main skips it then). */
bool tu_listing(void);

/* A fresh directory under $TMPDIR, removed by tu_rmrf (kept when RW_KEEP is set in
 * the environment, to look at what a failing test left). */
char *tu_mkdtemp(const char *tag);
void tu_rmrf(const char *path);

/* Path of the rewind binary and of a bundled trace. */
const char *tu_bin(void);
const char *tu_trace(const char *name, char *buf, size_t len);

/* Runs a shell command line; returns its exit status (or 128+signal). stdout and
 * stderr go to files in the scratch dir when out is non-NULL (out.stdout/.stderr). */
int tu_sh(const char *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Entries in a directory (open descriptors: "/proc/self/fd"). */
int tu_count_dir(const char *path);

/* Reads a whole file into a NUL-terminated malloc'd buffer. */
char *tu_slurp(const char *path, size_t *len);

/* One packet as libpcap sees it. */
struct tu_pkt {
    uint64_t ts_ns;
    uint32_t caplen, len;
    uint8_t *data;
};

struct tu_pcap {
    size_t n;
    struct tu_pkt *pkts;
};

/* Reads every packet of a pcap or pcapng with libpcap (nanosecond timestamps).
 * Returns 0, or -1 when libpcap cannot open or finish the file. */
int tu_pcap_read(const char *path, struct tu_pcap *out);
void tu_pcap_free(struct tu_pcap *p);

/* Writes packets as a microsecond pcap with libpcap. */
int tu_pcap_write(const char *path, const struct tu_pcap *p);

#endif
