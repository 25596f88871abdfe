/*
 * root_trace.c - the libpcap scan of a trace before the root reads it through
 * DPDK (why: see root.h).
 */
#include "root.h"

#include <errno.h>
#include <pcap/pcap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int root_trace_scan(const char *path, struct root_trace *t, struct rw_err *e)
{
    char err[PCAP_ERRBUF_SIZE];
    memset(t, 0, sizeof(*t));
    /* A trace is read twice (here, then by DPDK's pcap driver): a FIFO or a device
     * would be drained by this scan and leave the driver waiting for ever. */
    struct stat sb;
    if (stat(path, &sb))
        return rw_errf(e, errno == ENOENT ? RW_ENOENT : RW_EIO, "%s: cannot open the trace: %s",
                       path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return rw_errf(e, RW_EINVAL,
                       "%s: not a regular file (%s); a trace is read twice, give a capture "
                       "file (a live feed is a --port)",
                       path,
                       S_ISFIFO(sb.st_mode)  ? "a FIFO"
                       : S_ISDIR(sb.st_mode) ? "a directory"
                                             : "a device or socket");
    pcap_t *p = pcap_open_offline_with_tstamp_precision(path, PCAP_TSTAMP_PRECISION_NANO, err);
    if (!p)
        return rw_errf(e, RW_EINPUT, "%s: not a readable capture: %s", path, err);
    if (pcap_datalink(p) != DLT_EN10MB) {
        int dlt = pcap_datalink(p);
        pcap_close(p);
        return rw_errf(e, RW_EINPUT, "%s: link type %s, rewind reads Ethernet captures", path,
                       pcap_datalink_val_to_name(dlt) ? pcap_datalink_val_to_name(dlt) : "?");
    }
    size_t cap = 4096;
    t->pkts = malloc(cap * sizeof(*t->pkts));
    struct pcap_pkthdr *h;
    const u_char *d;
    int rc;
    while (t->pkts && (rc = pcap_next_ex(p, &h, &d)) == 1) {
        if (t->n == cap) {
            cap *= 2;
            struct root_trace_pkt *q = realloc(t->pkts, cap * sizeof(*q));
            if (!q)
                break;
            t->pkts = q;
        }
        struct root_trace_pkt *k = &t->pkts[t->n++];
        k->ts_ns = (uint64_t)h->ts.tv_sec * 1000000000ull + (uint64_t)h->ts.tv_usec;
        k->wire_len = h->len;
        k->cap_len = h->caplen;
    }
    if (!t->pkts || rc == 1) {
        pcap_close(p);
        root_trace_free(t);
        return rw_errf(e, RW_ENOMEM, "%s: out of memory scanning the trace", path);
    }
    if (rc != PCAP_ERROR_BREAK) {
        t->damaged = true;
        snprintf(t->problem, sizeof(t->problem), "%s: damaged after packet %llu: %s", path,
                 (unsigned long long)t->n, pcap_geterr(p));
    }
    pcap_close(p);
    return 0;
}

void root_trace_free(struct root_trace *t)
{
    free(t->pkts);
    memset(t, 0, sizeof(*t));
}
