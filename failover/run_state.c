/*
 * run_state.c - the end-of-run state audit: once every worker of a fault-tolerant
 * run has finished and the store is final, each NF with an audit hook reads its
 * objects back (store_scan) and says what it holds, canonically, and which of
 * its invariants are broken (nf_def.audit).
 *
 * Why: a replayed op that the store failed to emulate (applied twice) is often
 * invisible in the output: a NAT's second port is renamed away by verify, a
 * counter counted twice may never be shown. Its trace is in the state: a port
 * neither free nor mapped, a counter above the fault-free run's. The summary goes
 * to OUT/state.json (verify compares two runs' summaries), the verdict to
 * report.json; a broken invariant fails the run (RW_ECORRUPT: exit 3).
 */
#include "run_internal.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"

/* One NF's audit into a (self init'ed from its config, then finished). */
static int audit_nf(struct run *r, struct store *st, uint32_t k, struct nf_audit *a,
                    struct rw_err *e)
{
    const struct chain_nf *nf = &r->chain->nfs[k];
    const struct nf_def *def = nf_find(nf->type);
    void *self = calloc(1, def->self_size ? def->self_size : 1);
    struct store_client *c = NULL;
    if (!self)
        return rw_errf(e, RW_ENOMEM, "out of memory");
    int rc = def->init(self, nf->config, e);
    if (!rc && (rc = store_client_open(st, k + 1, 0, &c, e)) == 0) {
        rc = def->audit(self, c, a, e);
        store_client_close(c);
    }
    if (def->fini)
        def->fini(self);
    free(self);
    return rc ? rw_err_prefix(e, "%s: ", nf->name) : 0;
}

static void write_list(FILE *f, const char *key, const char *prefix, const char *const *v, size_t n,
                       bool last)
{
    fprintf(f, "     \"%s\": [\n", key);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "      \"%s%s\"%s\n", prefix, v[i], i + 1 < n ? "," : "");
    fprintf(f, "     ]%s\n", last ? "" : ",");
}

/* Keeps the first broken invariants' messages for report.json. */
static void note_broken(struct run *r, const char *const *msgs, size_t n)
{
    for (size_t i = 0; i < n && r->state_nmsgs < RUN_STATE_MSGS; i++)
        snprintf(r->state_msgs[r->state_nmsgs++], sizeof(r->state_msgs[0]), "%s", msgs[i]);
}

int run_audit_state(struct run *r, struct rw_err *e)
{
    struct store *st = NULL;
    struct rw_err se = {0};
    struct nf_audit **a = calloc(r->chain->nnfs ? r->chain->nnfs : 1, sizeof(*a));
    if (!a)
        return rw_errf(e, RW_ENOMEM, "out of memory");
    int rc = store_open(r->store_url, &st, &se);
    for (uint32_t k = 0; !rc && k < r->chain->nnfs; k++) {
        if (!nf_find(r->chain->nfs[k].type)->audit)
            continue;
        if (!(a[k] = nf_audit_new()))
            rc = rw_errf(&se, RW_ENOMEM, "out of memory");
        else if (!(rc = audit_nf(r, st, k, a[k], &se)))
            nf_audit_sort(a[k]);
    }
    if (st)
        store_close(st);
    if (rc) { /* the check could not be made: say so, do not fail the run for it */
        snprintf(r->state_note, sizeof(r->state_note), "not checked: %.280s", se.msg);
        r->state_checked = 0;
    }
    /* Built in memory and written whole (run_write_whole): a disk that fills
     * leaves no cut state.json for verify to misread. */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = rc ? NULL : open_memstream(&buf, &len);
    for (uint32_t k = 0; !rc && k < r->chain->nnfs; k++) {
        const char *const *msgs;
        if (!a[k])
            continue;
        r->state_checked++;
        size_t nb = nf_audit_broken_list(a[k], &msgs);
        r->state_broken += (uint32_t)nb;
        note_broken(r, msgs, nb);
    }
    if (f) {
        fprintf(f, "{\n  \"checked\": %u,\n  \"broken\": %u,\n  \"nfs\": [", r->state_checked,
                r->state_broken);
        bool first = true;
        for (uint32_t k = 0; k < r->chain->nnfs; k++) {
            const char *const *v;
            char prefix[80];
            if (!a[k])
                continue;
            snprintf(prefix, sizeof(prefix), "%s: ", r->chain->nfs[k].name);
            fprintf(f, "%s\n    {\"name\": \"%s\", \"type\": \"%s\",\n", first ? "" : ",",
                    r->chain->nfs[k].name, r->chain->nfs[k].type);
            size_t n = nf_audit_lines(a[k], &v);
            write_list(f, "state", prefix, v, n, false);
            n = nf_audit_broken_list(a[k], &v);
            write_list(f, "broken", "", v, n, true);
            fprintf(f, "    }");
            first = false;
        }
        fprintf(f, "\n  ]\n}\n");
        struct rw_err we = {0};
        if (fclose(f) || run_write_whole(r, "state.json", buf, len, &we))
            snprintf(r->state_note, sizeof(r->state_note), "state.json not written: %.260s",
                     we.msg[0] ? we.msg : "out of memory");
    }
    free(buf);
    for (uint32_t k = 0; k < r->chain->nnfs; k++)
        nf_audit_free(a[k]);
    free(a);
    if (r->state_broken)
        return rw_errf(e, RW_ECORRUPT,
                       "the NFs' state breaks %u invariant%s after the run (%s/state.json): %s",
                       r->state_broken, r->state_broken == 1 ? "" : "s", r->o->out_dir,
                       r->state_msgs[0]);
    return 0;
}
