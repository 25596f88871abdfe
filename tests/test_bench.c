/*
 * test_bench.c - `rewind bench log|store|chain|failover --json` at their smallest
 * useful sizes: each prints exactly one JSON object on stdout, with the keys
 * docs/benchmarks.md documents, its figures positive where they are rates and
 * its ratios the ones of its own figures. A benchmark is not a timed test: no
 * speed is asserted, only shape.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "itest.h"

/* Python shared by every check: d is the parsed object (json.load refuses any
 * trailing text, so stdout must be one value), keys() wants exactly the named
 * keys, pos() positive numbers, num() numbers, near() a ratio of two figures. */
static const char *prelude =
    "import json, sys\n"
    "d = json.load(sys.stdin)\n"
    "assert isinstance(d, dict), type(d)\n"
    "def isnum(x):\n"
    "    return isinstance(x, (int, float)) and not isinstance(x, bool)\n"
    "def num(*xs):\n"
    "    for x in xs:\n"
    "        assert isnum(x), x\n"
    "def pos(*xs):\n"
    "    for x in xs:\n"
    "        assert isnum(x) and x > 0, x\n"
    "def keys(o, *ks):\n"
    "    assert isinstance(o, dict) and set(o) == set(ks), (sorted(o), sorted(ks))\n"
    "def near(r, a, b):\n"
    "    assert abs(r - a / b) <= 0.01 * a / b + 1e-9, (r, a, b)\n";

/* Runs `rewind bench ARGS --json` with stdout and stderr in dir/tag.*, then the
 * python statements `check` on its stdout. */
static void bench_json(const char *dir, const char *tag, const char *args, const char *check)
{
    char o[4200], out[4300];
    snprintf(o, sizeof(o), "%s/%s", dir, tag);
    snprintf(out, sizeof(out), "%s.stdout", o);
    int rc = tu_sh(o, "'%s' bench %s --json", tu_bin(), args);
    if (rc)
        tu_sh(NULL, "cat '%s.stderr' >&2", o);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    rc = tu_sh(NULL, "python3 -c '%s%s' < '%s'", prelude, check, out);
    if (rc)
        tu_sh(NULL, "echo 'bench %s --json printed:' >&2; cat '%s' >&2", tag, out);
    CU_ASSERT_EQUAL(rc, 0);
}

static void test_bench_log_json(void)
{
    char *d = tu_mkdtemp("benchlog");
    char args[4200];
    snprintf(args, sizeof(args),
             "log --packets 2000 --query-packets 70000 --pacing-packets 4000 --dir '%s'", d);
    bench_json(
        d, "log", args,
        "keys(d, \"packets\", \"runs\", \"ingest\", \"end_to_end\", \"export\", "
        "\"queries\", \"pacing\")\n"
        "assert [p[\"speed\"] for p in d[\"pacing\"]] == [1, 10]\n"
        "for p in d[\"pacing\"]:\n"
        "    keys(p, \"speed\", \"packets\", \"elapsed_s\", \"scheduled_s\", \"drift_ms\", "
        "\"drift_pct\", \"late\", \"max_late_ms\")\n"
        "    assert p[\"packets\"] == 4000, p\n"
        "    pos(p[\"elapsed_s\"], p[\"scheduled_s\"])\n"
        "    assert abs(p[\"scheduled_s\"] - 3999 * 50e-6 / p[\"speed\"]) < 1e-4, p\n"
        "assert d[\"packets\"] == 2000 and d[\"runs\"] == 3\n"
        "assert [(r[\"bytes\"], r[\"durability\"]) for r in d[\"ingest\"]] == "
        "[(b, m) for b in (64, 1500) for m in (\"none\", \"process\", \"power\")]\n"
        "for r in d[\"ingest\"]:\n"
        "    keys(r, \"bytes\", \"packets\", \"durability\", \"pps\", \"mb_s\", "
        "\"raw_pps\", \"raw_mb_s\", \"ratio\")\n"
        "    pos(r[\"packets\"], r[\"pps\"], r[\"mb_s\"], r[\"raw_pps\"], r[\"raw_mb_s\"], "
        "r[\"ratio\"])\n"
        "    near(r[\"ratio\"], r[\"pps\"], r[\"raw_pps\"])\n"
        "e = d[\"end_to_end\"]\n"
        "keys(e, \"pps\", \"ratio\")\n"
        "pos(e[\"pps\"], e[\"ratio\"])\n"
        "near(e[\"ratio\"], e[\"pps\"], d[\"ingest\"][2][\"raw_pps\"])\n"
        "assert [x[\"flows\"] for x in d[\"export\"]] == [\"session\", \"uniform\"]\n"
        "for x in d[\"export\"]:\n"
        "    keys(x, \"flows\", \"packets\", \"matched\", \"rewind_s\", \"tcpdump_s\", "
        "\"speedup\")\n"
        "    num(x[\"matched\"])\n"
        "    pos(x[\"packets\"], x[\"rewind_s\"], x[\"tcpdump_s\"], x[\"speedup\"])\n"
        "    near(x[\"speedup\"], x[\"tcpdump_s\"], x[\"rewind_s\"])\n"
        "assert [q[\"kind\"] for q in d[\"queries\"]] == "
        "[\"host\", \"host+proto\", \"subnet\", \"port\", \"proto\"]\n"
        "for q in d[\"queries\"]:\n"
        "    keys(q, \"packets\", \"kind\", \"filter\", \"matched\", \"blocks_read\", "
        "\"blocks_total\", \"rewind_s\", \"tcpdump_s\", \"speedup\")\n"
        "    assert q[\"packets\"] == 70000\n"
        "    pos(q[\"matched\"], q[\"blocks_read\"], q[\"rewind_s\"], q[\"tcpdump_s\"])\n"
        "    assert q[\"blocks_read\"] <= q[\"blocks_total\"]\n"
        "    near(q[\"speedup\"], q[\"tcpdump_s\"], q[\"rewind_s\"])\n"
        "h = d[\"queries\"][0]\n"
        "assert h[\"blocks_read\"] * 5 < h[\"blocks_total\"], h  # the keys index narrowed it\n");
    tu_rmrf(d);
    free(d);
}

/* Both backends: bench store starts its own redis-server, as test_run's Redis
 * test does (redis-server is a build requirement of the suite). */
static void test_bench_store_json(void)
{
    char *d = tu_mkdtemp("benchstore");
    char args[4200];
    snprintf(args, sizeof(args), "store --ops 1000 --batch 100 --keys 16 --dir '%s/s'", d);
    bench_json(d, "store", args,
               "keys(d, \"ops\", \"batch\", \"keys\", \"baseline\", \"results\")\n"
               "assert (d[\"ops\"], d[\"batch\"], d[\"keys\"]) == (1000, 100, 16)\n"
               "b = d[\"baseline\"]\n"
               "keys(b, \"lmdb_put\", \"redis_incrby\")\n"
               "pos(b[\"lmdb_put\"], b[\"redis_incrby\"])\n"
               "assert [(r[\"backend\"], r[\"op\"]) for r in d[\"results\"]] == "
               "[(k, o) for k in (\"lmdb\", \"redis\") for o in (\"incr\", \"pop\", "
               "\"emulated\")]\n"
               "for r in d[\"results\"]:\n"
               "    keys(r, \"backend\", \"op\", \"ops_per_s\", \"vs_lmdb_put\", "
               "\"vs_redis_incrby\")\n"
               "    pos(r[\"ops_per_s\"], r[\"vs_lmdb_put\"], r[\"vs_redis_incrby\"])\n"
               "    near(r[\"vs_lmdb_put\"], r[\"ops_per_s\"], b[\"lmdb_put\"])\n"
               "    near(r[\"vs_redis_incrby\"], r[\"ops_per_s\"], b[\"redis_incrby\"])\n");
    /* without Redis: its baseline and ratios are null */
    snprintf(args, sizeof(args), "store --ops 1000 --backend lmdb --dir '%s/s2'", d);
    bench_json(d, "store-lmdb", args,
               "assert d[\"baseline\"][\"redis_incrby\"] is None\n"
               "assert [r[\"backend\"] for r in d[\"results\"]] == [\"lmdb\"] * 3\n"
               "for r in d[\"results\"]:\n"
               "    pos(r[\"ops_per_s\"], r[\"vs_lmdb_put\"])\n"
               "    assert r[\"vs_redis_incrby\"] is None\n");
    tu_rmrf(d);
    free(d);
}

static void test_bench_chain_json(void)
{
    char *d = tu_mkdtemp("benchchain");
    bench_json(d, "chain", "chain --packets 2000 --chain firewall --chain trojan",
               "keys(d, \"packets\", \"runs\", \"chains\")\n"
               "assert d[\"packets\"] == 2000 and d[\"runs\"] == 3\n"
               "assert [(c[\"chain\"], c[\"nfs\"]) for c in d[\"chains\"]] == "
               "[(\"firewall\", 1), (\"trojan\", 2)]\n"
               "for c in d[\"chains\"]:\n"
               "    keys(c, \"chain\", \"nfs\", \"ft_pps\", \"noft_pps\", \"ratio\", "
               "\"nf_added_us\", \"latency_us\", \"latency_half_rate_us\", \"noft_latency_us\", "
               "\"nf_p50_us\")\n"
               "    pos(c[\"ft_pps\"], c[\"noft_pps\"], c[\"ratio\"])\n"
               "    near(c[\"ratio\"], c[\"ft_pps\"], c[\"noft_pps\"])\n"
               "    for k in (\"latency_us\", \"latency_half_rate_us\", \"noft_latency_us\"):\n"
               "        keys(c[k], \"p50\", \"p99\")\n"
               "        pos(c[k][\"p50\"], c[k][\"p99\"])\n"
               "    keys(c[\"nf_p50_us\"], \"ft\", \"noft\")\n"
               "    ft, no = c[\"nf_p50_us\"][\"ft\"], c[\"nf_p50_us\"][\"noft\"]\n"
               "    assert len(ft) == len(no) == c[\"nfs\"]\n"
               "    pos(*ft, *no)\n" /* per NF, never 0 by accident */
               "    added = sum(a - b for a, b in zip(ft, no)) / len(ft)\n"
               "    assert abs(c[\"nf_added_us\"] - added) < 0.002, (c[\"nf_added_us\"], added)\n");
    /* A chain the catalog does not have is a usage error. */
    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "%s/nosuch", d);
    CU_ASSERT_EQUAL(tu_sh(cmd, "'%s' bench chain --chain nosuch --json", tu_bin()), 2);
    tu_rmrf(d);
    free(d);
}

static void test_bench_failover_json(void)
{
    char *d = tu_mkdtemp("benchfo");
    bench_json(d, "failover", "failover --packets 2000",
               "keys(d, \"chain\", \"kill_every_ms\", \"runs\", \"healthy_pps\", \"storm_pps\", "
               "\"ratio\", \"failovers\", \"detection_ms\", \"recovery_ms\")\n"
               "pos(d[\"healthy_pps\"], d[\"storm_pps\"], d[\"ratio\"])\n"
               "near(d[\"ratio\"], d[\"storm_pps\"], d[\"healthy_pps\"])\n"
               "num(d[\"failovers\"])\n"
               "for k in (\"detection_ms\", \"recovery_ms\"):\n"
               "    keys(d[k], \"p50\", \"p99\")\n"
               "    num(d[k][\"p50\"], d[k][\"p99\"])\n");
    tu_rmrf(d);
    free(d);
}

static void add(CU_pSuite s)
{
    CU_add_test(s, "bench log --json prints one object", test_bench_log_json);
    CU_add_test(s, "bench store --json prints one object", test_bench_store_json);
    CU_add_test(s, "bench chain --json prints one object", test_bench_chain_json);
    CU_add_test(s, "bench failover --json prints one object", test_bench_failover_json);
}

int main(void)
{
    return tu_main("bench", add);
}
