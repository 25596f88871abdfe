/*
 * run_report.c - what a run leaves behind besides its output log:
 * OUT/report.json (counts, per-NF stats from the workers' status blocks, latency
 * percentiles) and OUT/alerts.json (every instance's alerts merged in clock
 * order, one JSON object per line).
 */
#include "run_internal.h"

#include <dirent.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static void merge_alerts(struct run *r)
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
    if (n)
        qsort(v, n, sizeof(*v), by_clock);
    snprintf(path, sizeof(path), "%s/alerts.json", r->o->out_dir);
    FILE *f = fopen(path, "w");
    for (size_t i = 0; i < n; i++) {
        if (f)
            fputs(v[i].text, f);
        free(v[i].text);
    }
    if (f)
        fclose(f);
    free(v);
}

static uint64_t sum(const struct worker_status *st, size_t n, size_t off)
{
    uint64_t t = 0;
    for (size_t i = 0; i < n; i++)
        t += atomic_load((_Atomic uint64_t *)((const char *)&st[i] + off));
    return t;
}

/* The NF's named statistics, summed over its instances, as a JSON object. */
static void nf_counters(FILE *f, const struct worker_status *st, uint32_t n)
{
    char names[WORKER_COUNTERS * 4][24];
    int64_t sums[WORKER_COUNTERS * 4];
    unsigned k = 0;
    for (uint32_t i = 0; i < n; i++)
        for (int c = 0; c < WORKER_COUNTERS && st[i].counters[c].name[0]; c++) {
            unsigned j = 0;
            while (j < k && strncmp(names[j], st[i].counters[c].name, sizeof(names[0])))
                j++;
            if (j == k && k < WORKER_COUNTERS * 4) {
                snprintf(names[k], sizeof(names[0]), "%s", st[i].counters[c].name);
                sums[k++] = 0;
            }
            if (j < k)
                sums[j] += atomic_load(&st[i].counters[c].value);
        }
    fprintf(f, ", \"counters\": {");
    for (unsigned j = 0; j < k; j++)
        fprintf(f, "%s\"%s\": %lld", j ? ", " : "", names[j], (long long)sums[j]);
    fprintf(f, "}");
}

static void nf_stats(FILE *f, struct run *r, uint32_t k, uint32_t first, bool last)
{
    const struct chain_nf *nf = &r->chain->nfs[k];
    const struct worker_status *st = &r->status[first];
    _Atomic uint64_t lat[WORKER_LAT_BUCKETS] = {0};
    for (uint32_t i = 0; i < nf->instances; i++)
        for (int b = 0; b < WORKER_LAT_BUCKETS; b++)
            atomic_fetch_add(&lat[b], atomic_load(&st[i].lat[b]));
    fprintf(f,
            "    {\"name\": \"%s\", \"type\": \"%s\", \"instances\": %u, \"packets_in\": %" PRIu64
            ", \"packets_out\": %" PRIu64 ", \"dropped\": %" PRIu64 ", \"duplicates\": %" PRIu64
            ", \"latency_ns\": {\"p50\": %" PRIu64 ", \"p99\": %" PRIu64 "}",
            nf->name, nf->type, nf->instances,
            sum(st, nf->instances, offsetof(struct worker_status, pkts_in)),
            sum(st, nf->instances, offsetof(struct worker_status, pkts_out)),
            sum(st, nf->instances, offsetof(struct worker_status, dropped)),
            sum(st, nf->instances, offsetof(struct worker_status, dups)),
            worker_lat_percentile(lat, 50), worker_lat_percentile(lat, 99));
    nf_counters(f, st, nf->instances);
    fprintf(f, "}%s\n", last ? "" : ",");
}

static void write_report(struct run *r, const struct run_result *res, int rc, struct rw_err *e)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/report.json", r->o->out_dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return;
    _Atomic uint64_t lat[WORKER_LAT_BUCKETS];
    for (int b = 0; b < WORKER_LAT_BUCKETS; b++)
        atomic_init(&lat[b], r->sink_st.lat[b]);
    uint64_t nf_dups = 0;
    for (uint32_t w = 0; w < r->nworkers; w++)
        nf_dups += atomic_load(&r->status[w].dups);
    fprintf(f,
            "{\n  \"chain\": \"%s\",\n  \"mode\": \"%s\",\n  \"ok\": %s,\n  \"error\": \"%s\",\n"
            "  \"packets_in\": %" PRIu64 ",\n  \"packets_out\": %" PRIu64 ",\n"
            "  \"duplicates_suppressed\": %" PRIu64 ",\n  \"seconds\": %.3f,\n"
            "  \"pipeline_seconds\": %.3f,\n  \"throughput_pps\": %.0f,\n  \"latency_ns\": "
            "{\"p50\": %" PRIu64 ", \"p99\": %" PRIu64 "},\n  \"failovers\": 0,\n  \"nfs\": [\n",
            r->chain->name, r->o->no_ft ? "no-ft" : "ft", rc ? "false" : "true",
            rc && e ? "see stderr" : "", res->packets_in, res->packets_out,
            res->duplicates + nf_dups, res->seconds, (double)r->pipeline_ns / 1e9,
            r->pipeline_ns ? (double)res->packets_in * 1e9 / (double)r->pipeline_ns : 0.0,
            worker_lat_percentile(lat, 50), worker_lat_percentile(lat, 99));
    uint32_t first = 0;
    for (uint32_t k = 0; k < r->chain->nnfs; k++) {
        nf_stats(f, r, k, first, k + 1 == r->chain->nnfs);
        first += r->chain->nfs[k].instances;
    }
    fprintf(f, "  ]\n}\n");
    fclose(f);
}

void run_write_outputs(struct run *r, const struct run_result *res, int rc, struct rw_err *e)
{
    merge_alerts(r);
    write_report(r, res, rc, e);
}
