/*
 * run_report.c - what a run leaves behind besides its output log:
 * OUT/report.json (counts, per-NF stats from the workers' status blocks, latency
 * percentiles) and OUT/alerts.json (every instance's alerts merged in clock
 * order, one JSON object per line).
 *
 * Both are written whole or not at all, full disk or not: their room is taken
 * when the run starts (run_reserve_outputs: a preallocated temp file each),
 * they are built in memory, written into that room and renamed into place. A
 * run that ends because its disk is full (the log, the store, the output) is
 * the run whose report matters most, and it used to leave both at 0 bytes.
 */
#include "run_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Room taken at the start. A report is ~0.5 KiB per NF plus its failover log
 * (~150 bytes a failover); one that outgrows its room on a full disk is written
 * again without the failover log (report_brief), which always fits. */
#define REPORT_ROOM_BASE   (64u << 10)
#define REPORT_ROOM_PER_NF (2u << 10)
#define ALERTS_ROOM        (1u << 20)

static void tmp_path(const struct run *r, const char *name, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/.%s.tmp", r->o->out_dir, name);
}

static int reserve(const struct run *r, const char *name, off_t bytes, struct rw_err *e)
{
    char path[PATH_MAX + 16];
    tmp_path(r, name, path, sizeof(path));
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int err = fd < 0 ? errno : posix_fallocate(fd, 0, bytes);
    if (fd >= 0)
        close(fd);
    if (err)
        return rw_errf(e, err == ENOSPC || err == EDQUOT ? RW_ENOSPC : RW_EIO,
                       "%s: cannot take room for %s: %s", r->o->out_dir, name, strerror(err));
    return 0;
}

int run_reserve_outputs(struct run *r, struct rw_err *e)
{
    off_t report = REPORT_ROOM_BASE + (off_t)REPORT_ROOM_PER_NF * r->chain->nnfs;
    int rc = reserve(r, "report.json", report, e);
    if (!rc)
        rc = reserve(r, "alerts.json", ALERTS_ROOM, e);
    /* The report's per-NF figures: with them a run that fails from here on,
     * even before a worker starts, still writes its report. */
    if (!rc && !(r->totals = calloc(r->chain->nnfs ? r->chain->nnfs : 1, sizeof(*r->totals))))
        rc = rw_errf(e, RW_ENOMEM, "out of memory");
    return rc;
}

int run_write_whole(const struct run *r, const char *name, const char *buf, size_t len,
                    struct rw_err *e)
{
    char tmp[PATH_MAX + 16], path[PATH_MAX + 16];
    tmp_path(r, name, tmp, sizeof(tmp));
    snprintf(path, sizeof(path), "%s/%s", r->o->out_dir, name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_CLOEXEC, 0600), err = fd < 0 ? errno : 0;
    for (size_t off = 0; !err && off < len;) {
        ssize_t w = pwrite(fd, buf + off, len - off, (off_t)off);
        if (w < 0 && errno != EINTR)
            err = errno;
        off += w > 0 ? (size_t)w : 0;
    }
    if (!err && (ftruncate(fd, (off_t)len) || fsync(fd)))
        err = errno;
    if (fd >= 0 && close(fd) && !err)
        err = errno;
    if (!err && rename(tmp, path))
        err = errno;
    if (err) {
        unlink(tmp);
        return rw_errf(e, err == ENOSPC || err == EDQUOT ? RW_ENOSPC : RW_EIO, "%s: %s", path,
                       strerror(err));
    }
    return 0;
}

struct alert_line {
    uint64_t clock;
    char *text;
};

static int by_clock(const void *a, const void *b)
{
    const struct alert_line *x = a, *y = b;
    if (x->clock != y->clock)
        return x->clock < y->clock ? -1 : 1;
    return strcmp(x->text, y->text);
}

static int read_alerts(const char *path, struct alert_line **v, size_t *n, size_t *cap)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char *line = NULL;
    size_t lcap = 0;
    while (getline(&line, &lcap, f) > 0) {
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 256;
            *v = realloc(*v, *cap * sizeof(**v));
        }
        const char *c = strstr(line, "\"clock\": ");
        (*v)[*n].clock = c ? strtoull(c + 9, NULL, 10) : 0;
        (*v)[(*n)++].text = strdup(line);
    }
    free(line);
    fclose(f);
    return 0;
}

/* One event per packet of death (run_quarantine.c), among the NFs' alerts. */
static void quarantine_events(struct run *r, struct alert_line **v, size_t *n, size_t *cap)
{
    for (uint32_t i = 0; i < run_quarantined(r); i++) {
        const struct worker_quarantine *q = &r->shared->quarantine[i];
        const struct run_slot *s = &r->slots[q->slot];
        char line[300];
        snprintf(line, sizeof(line),
                 "{\"clock\": %" PRIu64 ", \"ts\": %" PRIu64
                 ", \"nf\": \"%s\", \"type\": \"quarantine\", \"instance\": %u, \"sub\": %u}\n",
                 q->clock, q->ts_ns, r->chain->nfs[s->nf].name, s->instance, q->sub);
        if (*n == *cap) {
            size_t c = *cap ? *cap * 2 : 256;
            void *x = realloc(*v, c * sizeof(**v));
            if (!x)
                return;
            *v = x;
            *cap = c;
        }
        if (((*v)[*n].text = strdup(line)))
            (*v)[(*n)++].clock = q->clock;
    }
}

static int merge_alerts(struct run *r, struct rw_err *e)
{
    char dir[PATH_MAX], path[PATH_MAX + 300];
    snprintf(dir, sizeof(dir), "%s/alerts", r->o->out_dir);
    struct alert_line *v = NULL;
    size_t n = 0, cap = 0;
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (strstr(de->d_name, ".jsonl")) {
            snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
            read_alerts(path, &v, &n, &cap);
        }
    if (d)
        closedir(d);
    quarantine_events(r, &v, &n, &cap);
    if (n)
        qsort(v, n, sizeof(*v), by_clock);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    /* A replacement raises again the alerts of the packets it replays: the same
     * line (clock, NF, fields) twice is one alert, unless duplicate suppression
     * is off (the debug flag that shows what it prevents). */
    for (size_t i = 0; i < n; i++) {
        bool dup = i && !r->o->no_dedup && !strcmp(v[i].text, v[i - 1].text);
        if (f && !dup)
            fputs(v[i].text, f);
    }
    for (size_t i = 0; i < n; i++)
        free(v[i].text);
    free(v);
    if (!f || fclose(f)) {
        free(buf);
        return rw_errf(e, RW_ENOMEM, "alerts.json: out of memory");
    }
    int rc = run_write_whole(r, "alerts.json", buf, len, e);
    free(buf);
    return rc;
}

void run_json_string(FILE *f, const char *s)
{
    if (!s) {
        fputs("null", f);
        return;
    }
    fputc('"', f);
    for (; *s; s++)
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", (unsigned char)*s);
        else
            fputc(*s, f);
    fputc('"', f);
}

/* The NF's named statistics, summed over its processes, as a JSON object. */
static void nf_counters(FILE *f, const struct run_nf_total *t)
{
    fprintf(f, ", \"counters\": {");
    for (unsigned j = 0; j < t->ncounters; j++)
        fprintf(f, "%s\"%s\": %lld", j ? ", " : "", t->names[j], (long long)t->sums[j]);
    fprintf(f, "}");
}

/* Every process that served NF k, replacements too, is reaped by now: its
 * figures are in the NF's totals (run_spawn.c, fold). */
static void nf_stats(FILE *f, struct run *r, uint32_t k, bool last)
{
    const struct chain_nf *nf = &r->chain->nfs[k];
    const struct run_nf_total *t = &r->totals[k];
    _Atomic uint64_t lat[RW_LAT_BUCKETS];
    for (int b = 0; b < RW_LAT_BUCKETS; b++)
        atomic_init(&lat[b], t->lat[b]);
    fprintf(f,
            "    {\"name\": \"%s\", \"type\": \"%s\", \"instances\": %u, \"packets_in\": %" PRIu64
            ", \"packets_out\": %" PRIu64 ", \"dropped\": %" PRIu64 ", \"duplicates\": %" PRIu64
            ", \"latency_ns\": {\"p50\": %" PRIu64 ", \"p99\": %" PRIu64 "}"
            ", \"store\": {\"ops\": %" PRIu64 ", \"batches\": %" PRIu64
            ", \"local_reads\": %" PRIu64 "}",
            nf->name, nf->type, nf->instances, t->pkts_in, t->pkts_out, t->dropped, t->dups,
            rw_lat_percentile(lat, 50), rw_lat_percentile(lat, 99), t->store_ops, t->store_batches,
            t->store_local_reads);
    nf_counters(f, t);
    fprintf(f, "}%s\n", last ? "" : ",");
}

static int by_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* p (0..100) of n sorted values, in ms. */
static double pct_ms(const uint64_t *v, uint32_t n, double p)
{
    if (!n)
        return 0;
    uint32_t i = (uint32_t)((double)(n - 1) * p / 100.0 + 0.5);
    return (double)v[i] / 1e6;
}

/* The root's reassembly (docs/operator.md, "IP fragments"): fragments in, whole
 * datagrams out, fragments dropped by cause. */
static void frag_stats(FILE *f, const struct root_frag_stats *s)
{
    fprintf(f,
            "  \"fragments\": {\"in\": %" PRIu64 ", \"reassembled\": %" PRIu64
            ", \"dropped_overlap\": %" PRIu64 ", \"dropped_timeout\": %" PRIu64
            ", \"dropped_table_full\": %" PRIu64 ", \"dropped_invalid\": %" PRIu64 "},\n",
            s->in, s->reassembled, s->dropped_overlap, s->dropped_timeout, s->dropped_table_full,
            s->dropped_invalid);
}

/* Failovers: detection (fault to the coordinator's decision) and recovery (fault
 * to the replacement processing live traffic) times, and what was replayed. A
 * fault's time is known when chaos caused it; otherwise it is the detection. */
static void failover_stats(FILE *f, struct run *r, bool brief)
{
    uint32_t n = r->nfailovers < RUN_FAILOVER_LOG ? r->nfailovers : RUN_FAILOVER_LOG, nrec = 0;
    uint64_t *det = calloc(n ? n : 1, sizeof(uint64_t)), *rec = calloc(n ? n : 1, sizeof(uint64_t));
    uint64_t replayed = 0;
    for (uint32_t i = 0; det && rec && i < n; i++) {
        const struct run_failover *x = &r->failovers[i];
        det[i] = x->detected_ns - x->fault_ns;
        if (x->recovered_ns > x->fault_ns)
            rec[nrec++] = x->recovered_ns - x->fault_ns;
        replayed += x->replayed;
    }
    if (det && rec) {
        qsort(det, n, sizeof(uint64_t), by_u64);
        qsort(rec, nrec, sizeof(uint64_t), by_u64);
        fprintf(f,
                "  \"failovers\": %u,\n  \"failovers_logged\": %u,\n  \"backoffs\": %u,\n"
                "  \"recovered\": %u,\n  \"replayed_packets\": %" PRIu64
                ",\n  \"detection_ms\": {\"p50\": %.3f, \"p99\": %.3f},\n"
                "  \"recovery_ms\": {\"p50\": %.3f, \"p99\": %.3f},\n  \"failover_log\": [",
                r->nfailovers, n, r->backoffs, nrec, replayed, pct_ms(det, n, 50),
                pct_ms(det, n, 99), pct_ms(rec, nrec, 50), pct_ms(rec, nrec, 99));
    }
    for (uint32_t i = 0; i < n && !brief; i++) {
        const struct run_failover *x = &r->failovers[i];
        const struct run_slot *s = &r->slots[x->slot];
        fprintf(f,
                "%s\n    {\"nf\": \"%s\", \"instance\": %u, \"reason\": \"%s\", "
                "\"detection_ms\": %.3f, \"backoff_ms\": %u, \"recovery_ms\": %.3f, "
                "\"replayed\": %" PRIu64 "}",
                i ? "," : "", r->chain->nfs[s->nf].name, s->instance, x->reason,
                (double)(x->detected_ns - x->fault_ns) / 1e6, x->backoff_ms,
                x->recovered_ns > x->fault_ns ? (double)(x->recovered_ns - x->fault_ns) / 1e6
                                              : -1.0,
                x->replayed);
    }
    fprintf(f, "%s],\n", n && !brief ? "\n  " : "");
    if (brief)
        fprintf(f, "  \"failover_log_left_out\": \"no room on the disk for it\",\n");
    free(det);
    free(rec);
}

/* Stragglers (run_straggler.c): the policy, what it did, and per straggler its
 * CPU share against the reference, when its clone went live (detection to the
 * clone on live traffic) and which copy stayed. */
static void straggler_stats(FILE *f, struct run *r, bool brief)
{
    const struct chain_stragglers *p = &r->chain->stragglers;
    uint32_t n = r->nclones < RUN_FAILOVER_LOG ? r->nclones : RUN_FAILOVER_LOG;
    fprintf(f,
            "  \"stragglers\": {\"action\": \"%s\", \"factor\": %u, \"for_ms\": %u, "
            "\"detected\": %u, \"restarts\": %u},\n"
            "  \"clones\": %u,\n  \"clones_retired\": {\"clone_won\": %u, \"straggler_won\": %u, "
            "\"clone_lost\": %u},\n  \"clone_log\": [",
            chain_straggler_action_name(p->action), p->factor, p->for_ms, r->nclones, r->restarts,
            r->nclones - r->restarts, r->clones_won, r->workers_won, r->clones_lost);
    for (uint32_t i = 0; i < n && !brief; i++) {
        const struct run_clone *x = &r->clones[i];
        const struct run_slot *s = &r->slots[x->slot];
        fprintf(f,
                "%s\n    {\"nf\": \"%s\", \"instance\": %u, \"share\": %.3f, \"reference\": %.3f, "
                "\"detected_ms\": %.3f, \"outcome\": \"%s\", \"live_ms\": %.3f, "
                "\"replayed\": %" PRIu64 "}",
                i ? "," : "", r->chain->nfs[s->nf].name, s->instance, x->share, x->ref,
                (double)(x->detected_ns - r->t0_ns) / 1e6, x->outcome,
                x->live_ns ? (double)(x->live_ns - x->detected_ns) / 1e6 : -1.0, x->replayed);
    }
    fprintf(f, "%s],\n", n && !brief ? "\n  " : "");
}

static int write_report(struct run *r, const struct run_result *res, int rc, struct rw_err *e,
                        bool brief, struct rw_err *we)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return rw_errf(we, RW_ENOMEM, "report.json: out of memory");
    _Atomic uint64_t lat[RW_LAT_BUCKETS];
    for (int b = 0; b < RW_LAT_BUCKETS; b++)
        atomic_init(&lat[b], r->sink_st.lat[b]);
    uint64_t nf_dups = 0;
    for (uint32_t k = 0; k < r->chain->nnfs; k++)
        nf_dups += r->totals[k].dups;
    fprintf(f,
            "{\n  \"chain\": \"%s\",\n  \"mode\": \"%s\",\n  \"ok\": %s,\n"
            "  \"interrupted\": %s,\n  \"error\": ",
            r->chain->name, r->o->no_ft ? "no-ft" : "ft", rc ? "false" : "true",
            rc == RW_EINTR ? "true" : "false");
    /* The message the command prints: a report read alone still says why. */
    run_json_string(f, rc && e ? e->msg : "");
    fprintf(f,
            ",\n  \"packets_in\": %" PRIu64 ",\n  \"packets_out\": %" PRIu64 ",\n"
            "  \"duplicates_suppressed\": %" PRIu64 ",\n  \"seconds\": %.3f,\n"
            "  \"pipeline_seconds\": %.3f,\n  \"throughput_pps\": %.0f,\n  \"latency_ns\": "
            "{\"p50\": %" PRIu64 ", \"p99\": %" PRIu64 "},\n"
            "  \"held_max\": %" PRIu64 ",\n  \"input_pauses\": %" PRIu64 ",\n"
            "  \"quarantined\": %u,\n  \"max_frame\": %u,\n  \"oversize\": %" PRIu64 ",\n",
            res->packets_in, res->packets_out, res->duplicates + nf_dups, res->seconds,
            (double)r->pipeline_ns / 1e9,
            r->pipeline_ns ? (double)res->packets_in * 1e9 / (double)r->pipeline_ns : 0.0,
            rw_lat_percentile(lat, 50), rw_lat_percentile(lat, 99), r->sink_st.held_max,
            r->root_st.full_waits, run_quarantined(r), r->chain->max_frame, r->root_st.oversize);
    failover_stats(f, r, brief);
    straggler_stats(f, r, brief);
    frag_stats(f, &r->root_st.frag);
    if (r->state_run) {
        fprintf(f, "  \"state\": {\"checked\": %u, \"broken\": %u, \"note\": ", r->state_checked,
                r->state_broken);
        run_json_string(f, r->state_note);
        fprintf(f, ", \"messages\": [");
        for (uint32_t i = 0; i < r->state_nmsgs; i++) {
            fputs(i ? ", " : "", f);
            run_json_string(f, r->state_msgs[i]);
        }
        fprintf(f, "]},\n");
    }
    fprintf(f, "  \"nfs\": [\n");
    for (uint32_t k = 0; k < r->chain->nnfs; k++)
        nf_stats(f, r, k, k + 1 == r->chain->nnfs);
    fprintf(f, "  ]\n}\n");
    if (fclose(f)) {
        free(buf);
        return rw_errf(we, RW_ENOMEM, "report.json: out of memory");
    }
    int wrc = run_write_whole(r, "report.json", buf, len, we);
    free(buf);
    return wrc;
}

int run_write_outputs(struct run *r, const struct run_result *res, int rc, struct rw_err *e)
{
    struct rw_err ae = {0}, we = {0};
    int arc = merge_alerts(r, &ae);
    if (arc && !rc) { /* the report says why the run failed: alerts.json not written */
        rc = arc;
        *e = ae;
    }
    int wrc = write_report(r, res, rc, e, false, &we);
    if (wrc == RW_ENOSPC)
        wrc = write_report(r, res, rc, e, true, &we);
    return rc ? rc : wrc ? (*e = we, wrc) : arc;
}
