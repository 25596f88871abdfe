/*
 * run_outdir.c - a run's output directory (--out): made private (0700), and
 * never shared with an earlier run.
 *
 * A second run into a directory that holds a first one used to carry on from
 * it: its root resumed the first run's clock reservation (clocks from 65536),
 * its NFs the first run's store (NAT ports carried on), and its output and
 * alerts landed beside the first run's, so `rewind verify` found tens of
 * thousands of duplicates. A run's directory now holds one run: one that holds
 * any of a run's files is refused (exit 2) unless --force asks to replace it,
 * and then exactly those files go, nothing else the directory holds.
 */
#include "run_internal.h"

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* What a run writes into its directory, besides a store inside it. */
static const char *const run_files[] = {"log", "output", "alerts", "alerts.json", "report.json",
                                        "chaos.json", "state.json", "quarantine.pcapng",
                                        /* the room run_report.c takes, and the temp
                                         * files of the reports written whole */
                                        ".alerts.json.tmp", ".report.json.tmp", ".state.json.tmp",
                                        ".chaos.json.tmp", ".quarantine.pcapng.tmp"};
#define NRUN_FILES (sizeof(run_files) / sizeof(run_files[0]))

/* The entry of --out that holds an `lmdb:` store given relative to it (the first
 * component of its path, past any "./"), or "" when the store is not inside --out:
 * an absolute path, or one that climbs out with "..". --force removes that entry,
 * so it must never be "." or "..". */
static void inner_store(const char *url, char *name, size_t cap)
{
    name[0] = '\0';
    if (strncmp(url, "lmdb:", 5) || url[5] == '/')
        return;
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%.*s", (int)strcspn(url + 5, "?"), url + 5);
    const char *first = NULL;
    for (char *save, *c = strtok_r(path, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (!strcmp(c, ".."))
            return;
        if (!first && strcmp(c, "."))
            first = c;
    }
    if (first)
        snprintf(name, cap, "%s", first);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)ftw;
    return (flag == FTW_DP ? rmdir(path) : unlink(path)) ? -1 : 0;
}

static bool exists(const char *dir, const char *name, char *path, size_t cap)
{
    struct stat st;
    snprintf(path, cap, "%s/%s", dir, name);
    return *name && lstat(path, &st) == 0;
}

int run_prepare_out(struct run *r, struct rw_err *e)
{
    const char *dir = r->o->out_dir;
    char store[256], path[PATH_MAX], found[512] = "";
    inner_store(r->chain->store_url, store, sizeof(store));
    if (mkdir(dir, 0700) && errno != EEXIST)
        return rw_errf(e, RW_EIO, "%s: %s", dir, strerror(errno));
    for (size_t i = 0; i <= NRUN_FILES; i++) {
        const char *name = i < NRUN_FILES ? run_files[i] : store;
        if (!exists(dir, name, path, sizeof(path)))
            continue;
        if (!r->o->force) {
            size_t n = strlen(found);
            snprintf(found + n, sizeof(found) - n, "%s%s", n ? ", " : "", name);
            continue;
        }
        if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS))
            return rw_errf(e, RW_EIO, "--force: cannot remove %s: %s", path, strerror(errno));
    }
    if (*found)
        return rw_errf(e, RW_EINVAL,
                       "%s holds a previous run (%s); a new run would mix with it: give another "
                       "--out, or --force to replace that run",
                       dir, found);
    snprintf(path, sizeof(path), "%s/alerts", dir);
    if (mkdir(path, 0700))
        return rw_errf(e, RW_EIO, "%s: %s", path, strerror(errno));
    return 0;
}
