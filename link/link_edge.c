/*
 * link_edge.c - an edge of the chain as its sender sees it (link.h). libpcap
 * compiles and runs the filters; the flowspace hash is common/rw_flow.c's, the
 * one the splitters, the log and verify share.
 */
#include "link.h"

#include <pcap/pcap.h>
#include <stdlib.h>
#include <string.h>

int link_edge_open(struct link_edge *ed, struct link **links, unsigned n, enum rw_flowspace fs,
                   const char *filter, struct rw_err *e)
{
    *ed = (struct link_edge){.links = links, .n = n, .fs = fs};
    if (!filter || !*filter)
        return 0;
    /* The snap length only bounds what the filter may look at: a jumbo frame's
     * whole payload. */
    struct bpf_program *prog = calloc(1, sizeof(*prog));
    if (!prog)
        return rw_errf(e, RW_ENOMEM, "out of memory");
    pcap_t *dead = pcap_open_dead(DLT_EN10MB, 262144);
    int bad = !dead || pcap_compile(dead, prog, filter, 1, PCAP_NETMASK_UNKNOWN) < 0;
    if (dead)
        pcap_close(dead);
    if (bad) {
        free(prog);
        return rw_errf(e, RW_EINVAL, "edge filter '%s' does not compile", filter);
    }
    ed->filter = prog;
    return 0;
}

int link_edge_pick(const struct link_edge *ed, const uint8_t *data, uint32_t len, uint32_t wire_len)
{
    if (ed->filter) {
        struct pcap_pkthdr h = {.caplen = len, .len = wire_len};
        if (!pcap_offline_filter(ed->filter, &h, data))
            return -1;
    }
    if (ed->n <= 1)
        return 0;
    return (int)(rw_flowspace_hash(data, len, ed->fs) % ed->n);
}

void link_edge_close(struct link_edge *ed)
{
    if (ed->filter) {
        pcap_freecode(ed->filter);
        free(ed->filter);
    }
    ed->filter = NULL;
}
