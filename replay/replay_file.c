/*
 * replay_file.c - log selection to a capture file (pcapng or classic pcap).
 *
 * The BPF expression is compiled by libpcap (never parsed here) and run with
 * pcap_offline_filter on each record the log's indexes let through.
 */
#include "replay.h"
#include "replay_filter.h"

#include <errno.h>
#include <inttypes.h>
#include <pcap/pcap.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct file_out {
    struct replay_filter filt;
    struct pcapng ng;
    pcap_t *dead;
    pcap_dumper_t *dump;
    bool nano;
    struct replay_stats *st;
    int werr; /* errno of a failed write */
};

static bool ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf);
}

static int write_rec(void *ctx, const struct log_rec *r)
{
    struct file_out *f = ctx;
    if (!replay_filter_match(&f->filt, r))
        return 0;
    if (f->dump) {
        struct pcap_pkthdr h;
        uint64_t frac = r->meta.ts_ns % 1000000000ull;
        h.ts.tv_sec = (time_t)(r->meta.ts_ns / 1000000000ull);
        h.ts.tv_usec = (suseconds_t)(f->nano ? frac : frac / 1000);
        h.caplen = r->cap_len;
        h.len = r->orig_len;
        pcap_dump((u_char *)f->dump, &h, r->data);
    } else {
        char comment[64];
        snprintf(comment, sizeof(comment), "clock=%" PRIu64 " sub=%u", r->meta.clock, r->meta.sub);
        if (pcapng_write(&f->ng, r->meta.ts_ns, r->cap_len, r->orig_len, r->data, comment)) {
            f->werr = errno ? errno : EIO;
            return RW_EIO;
        }
    }
    f->st->packets++;
    f->st->bytes += r->cap_len;
    return 0;
}

static int open_out(struct file_out *f, const char *logdir, const char *path, const char *query,
                    struct rw_err *e)
{
    if (!f->dump && !ends_with(path, ".pcap")) {
        char comment[4200], name[300];
        const char *base =
            strrchr(logdir, '/') && strrchr(logdir, '/')[1] ? strrchr(logdir, '/') + 1 : logdir;
        snprintf(comment, sizeof(comment), "rewind log %s%s%s", logdir, query ? "; query: " : "",
                 query ? query : "");
        snprintf(name, sizeof(name), "rewind:%s", base);
        struct pcapng_info in = {
            .application = "rewind",
            .comment = comment,
            .if_name = name,
            .if_description = "packets as the root logged them; clock=N sub=S in each comment"};
        if (pcapng_open(&f->ng, path, &in))
            return rw_errf(e, RW_EIO, "%s: %s", path, strerror(errno));
        return 0;
    }
    f->dead = pcap_open_dead_with_tstamp_precision(
        DLT_EN10MB, 262144, f->nano ? PCAP_TSTAMP_PRECISION_NANO : PCAP_TSTAMP_PRECISION_MICRO);
    f->dump = f->dead ? pcap_dump_open(f->dead, path) : NULL;
    if (!f->dump)
        return rw_errf(e, RW_EIO, "%s: %s", path, f->dead ? pcap_geterr(f->dead) : "pcap");
    return 0;
}

static int close_out(struct file_out *f, const char *path, struct rw_err *e)
{
    int bad = 0;
    if (f->dump) {
        bad = pcap_dump_flush(f->dump) || ferror(pcap_dump_file(f->dump));
        if (bad)
            f->werr = errno ? errno : EIO;
        pcap_dump_close(f->dump);
    } else if (pcapng_close(&f->ng)) {
        bad = 1;
        f->werr = f->werr ? f->werr : errno ? errno : EIO;
    }
    if (f->dead)
        pcap_close(f->dead);
    if (bad || f->werr)
        return rw_errf(e, f->werr == ENOSPC ? RW_ENOSPC : RW_EIO, "%s: write failed: %s", path,
                       strerror(f->werr));
    return 0;
}

int replay_to_file(const char *logdir, const char *path, const struct replay_opts *o,
                   struct replay_stats *st, struct rw_err *e)
{
    struct replay_stats local;
    if (!st)
        st = &local;
    memset(st, 0, sizeof(*st));
    struct file_out f = {.st = st, .nano = o->pcap_nanosecond};
    int rc = replay_filter_init(&f.filt, o->bpf, e);
    if (rc)
        return rc;
    struct log_reader *r;
    if ((rc = log_reader_open(logdir, &r, e))) {
        replay_filter_fini(&f.filt);
        return rc;
    }
    /* a refused query leaves no empty capture behind that could pass for an answer */
    if (!(rc = log_query_check(r, &o->q, e)) && !(rc = open_out(&f, logdir, path, o->query, e))) {
        rc = replay_scan(r, o, &f.filt, write_rec, &f, &st->scan, e);
        int crc = close_out(&f, path, rc ? NULL : e);
        if (!rc)
            rc = crc;
    }
    log_reader_close(r);
    replay_filter_fini(&f.filt);
    return rc;
}

int replay_trim_capture(const char *path, uint64_t *kept, struct rw_err *e)
{
    char err[PCAP_ERRBUF_SIZE];
    *kept = 0;
    pcap_t *p = pcap_open_offline(path, err);
    if (!p)
        return rw_errf(e, RW_ECORRUPT, "%s: not even its header is whole: %s", path, err);
    /* libpcap reads a record (pcap) or a block (pcapng) at a time from the FILE:
     * after each whole packet its offset is where a cut keeps only whole ones. */
    long good = ftell(pcap_file(p));
    struct pcap_pkthdr *h;
    const u_char *d;
    int rc;
    while ((rc = pcap_next_ex(p, &h, &d)) == 1) {
        good = ftell(pcap_file(p));
        ++*kept;
    }
    pcap_close(p);
    if (rc == PCAP_ERROR_BREAK || good < 0)
        return 0;
    if (truncate(path, good))
        return rw_errf(e, RW_EIO, "%s: truncate: %s", path, strerror(errno));
    return 0;
}
