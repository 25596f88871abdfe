/*
 * run_worker.c - `rewind worker`: one NF instance, spawned by `rewind run`. It
 * re-reads the chain file for its NF's type, config and edges, attaches to the
 * links and the status block it inherited, and runs the worker loop until the
 * chain's final mark. It dies with its coordinator (PR_SET_PDEATHSIG): a worker
 * must never outlive the process that owns its links.
 */
#include "failover.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "nfworker.h"

#define MAX_LINKS 256

struct wargs {
    const char *chain, *store, *alerts;
    unsigned nf, instance, status_index;
    int status_fd;
    bool no_ft;
    const char *in;
    const char *out[8];
    unsigned nout;
};

static int parse_args(int argc, char **argv, struct wargs *a)
{
    memset(a, 0, sizeof(*a));
    a->status_fd = -1;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strncmp(s, "--chain=", 8))
            a->chain = s + 8;
        else if (!strncmp(s, "--nf=", 5))
            a->nf = (unsigned)atoi(s + 5);
        else if (!strncmp(s, "--instance=", 11))
            a->instance = (unsigned)atoi(s + 11);
        else if (!strncmp(s, "--status=", 9))
            sscanf(s + 9, "%d:%u", &a->status_fd, &a->status_index);
        else if (!strncmp(s, "--store=", 8))
            a->store = s + 8;
        else if (!strncmp(s, "--alerts=", 9))
            a->alerts = s + 9;
        else if (!strcmp(s, "--no-ft"))
            a->no_ft = true;
        else if (!strncmp(s, "--in=", 5))
            a->in = s + 5;
        else if (!strncmp(s, "--out=", 6) && a->nout < 8)
            a->out[a->nout++] = s + 6;
        else if (!strcmp(s, "--help"))
            return 1;
        else
            return -1;
    }
    return a->chain && a->status_fd >= 0 && a->in ? 0 : -1;
}

/* "m:v,m:v,..." -> attached links. */
static int attach_list(const char *s, struct link **out, unsigned *n, struct rw_err *e)
{
    *n = 0;
    while (s && *s && *n < MAX_LINKS) {
        int m, v, used;
        if (sscanf(s, "%d:%d%n", &m, &v, &used) != 2)
            return rw_errf(e, RW_EINVAL, "bad link list '%s'", s);
        int rc = link_attach(m, v, &out[(*n)++], e);
        if (rc)
            return rc;
        s += used;
        if (*s == ',')
            s++;
    }
    return 0;
}

static struct worker_status *map_status(const struct wargs *a, const struct chain *c)
{
    unsigned total = 0;
    for (uint32_t k = 0; k < c->nnfs; k++)
        total += c->nfs[k].instances;
    if (a->status_index >= total)
        return NULL;
    void *p = mmap(NULL, total * sizeof(struct worker_status), PROT_READ | PROT_WRITE, MAP_SHARED,
                   a->status_fd, 0);
    return p == MAP_FAILED ? NULL : (struct worker_status *)p + a->status_index;
}

struct wstate {
    struct chain *chain;
    struct link *in[MAX_LINKS];
    unsigned nin;
    struct link *outl[8][MAX_LINKS];
    struct worker_out out[8];
};

static int setup_outs(const struct wargs *a, struct wstate *s, struct rw_err *e)
{
    for (unsigned j = 0; j < a->nout; j++) {
        unsigned edge;
        int used;
        if (sscanf(a->out[j], "%u=%n", &edge, &used) != 1 || edge >= s->chain->nedges)
            return rw_errf(e, RW_EINVAL, "bad --out '%s'", a->out[j]);
        const struct chain_edge *ed = &s->chain->edges[edge];
        struct worker_out *o = &s->out[j];
        int rc = attach_list(a->out[j] + used, s->outl[j], &o->n, e);
        if (rc)
            return rc;
        o->links = s->outl[j];
        o->fs = ed->to == CHAIN_OUTPUT ? RW_FS_5TUPLE
                                       : (enum rw_flowspace)s->chain->nfs[ed->to].flowspace;
        o->filter = ed->filter;
    }
    return 0;
}

static int run_one(const struct wargs *a, struct wstate *s, struct rw_err *e)
{
    int rc = chain_load(a->chain, nf_types(), &s->chain, e);
    if (rc)
        return rc;
    if (a->nf >= s->chain->nnfs)
        return rw_errf(e, RW_EINVAL, "no NF %u in %s", a->nf, a->chain);
    const struct chain_nf *nf = &s->chain->nfs[a->nf];
    struct worker_status *st = map_status(a, s->chain);
    if (!st)
        return rw_errf(e, RW_EINVAL, "bad status region");
    if ((rc = attach_list(a->in, s->in, &s->nin, e)) || (rc = setup_outs(a, s, e)))
        return rc;
    struct worker_opts wo = {.def = nf_find(nf->type),
                             .config = nf->config,
                             .nf_name = nf->name,
                             .vertex = a->nf + 1,
                             .instance = (uint16_t)a->instance,
                             .slot = (uint16_t)a->instance,
                             .ft = !a->no_ft,
                             .store_url = a->store,
                             .in = s->in,
                             .nin = s->nin,
                             .out = s->out,
                             .nout = a->nout,
                             .status = st,
                             .alerts_path = a->alerts};
    return worker_run(&wo, e);
}

int run_worker_main(int argc, char **argv)
{
    struct wargs a;
    int p = parse_args(argc, argv, &a);
    if (p) {
        fprintf(p > 0 ? stdout : stderr,
                "usage: rewind worker --chain=FILE --nf=K --instance=I --status=FD:IDX "
                "--in=FD:FD,... [--out=EDGE=FD:FD,...] [--store=URL] [--alerts=FILE] [--no-ft]\n\n"
                "One NF instance of a chain. Internal: `rewind run` starts these with the\n"
                "descriptors of their links; it is not meant to be run by hand.\n");
        return p > 0 ? 0 : 2;
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1)
        return 1;            /* the coordinator is already gone */
    signal(SIGINT, SIG_IGN); /* the coordinator decides when the chain stops */
    static struct wstate s;
    struct rw_err e = {0};
    int rc = run_one(&a, &s, &e);
    if (rc)
        fprintf(stderr, "rewind worker %u[%u]: %s\n", a.nf, a.instance, e.msg);
    if (s.chain)
        chain_free(s.chain);
    return rc ? 1 : 0;
}
