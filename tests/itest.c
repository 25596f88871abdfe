/*
 * itest.c - see itest.h.
 */
#include "itest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int it_ingest(const char *scratch, const char *trace, const char *log, const char *extra)
{
    char out[4096];
    snprintf(out, sizeof(out), "%s/ingest", scratch);
    return tu_sh(out, "'%s' log ingest --log '%s' --trace '%s' -q %s", tu_bin(), log, trace,
                 extra ? extra : "");
}

int it_export(const char *scratch, const char *log, const char *out, const char *extra)
{
    char o[4096];
    snprintf(o, sizeof(o), "%s/replay", scratch);
    return tu_sh(o, "'%s' replay '%s' --to-pcap '%s' %s", tu_bin(), log, out, extra ? extra : "");
}

long it_diff(const struct tu_pcap *a, size_t ao, const struct tu_pcap *b, size_t bo, size_t n,
             int check_ts)
{
    for (size_t i = 0; i < n; i++) {
        const struct tu_pkt *x = &a->pkts[ao + i], *y = &b->pkts[bo + i];
        if ((check_ts && x->ts_ns != y->ts_ns) || x->caplen != y->caplen || x->len != y->len ||
            memcmp(x->data, y->data, x->caplen)) {
            fprintf(stderr, "packet %zu differs (ts %llu/%llu caplen %u/%u len %u/%u)\n", i,
                    (unsigned long long)x->ts_ns, (unsigned long long)y->ts_ns, x->caplen,
                    y->caplen, x->len, y->len);
            return (long)i;
        }
    }
    return -1;
}

int it_file_has(const char *path, const char *needle)
{
    char *s = tu_slurp(path, NULL);
    int n = 0;
    for (char *p = s; p && (p = strstr(p, needle)); p += strlen(needle))
        n++;
    free(s);
    return n;
}
