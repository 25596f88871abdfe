/*
 * cmd_bench.c - `rewind bench ...`: benchmarks that print ratios against a
 * baseline measured in the same run (docs/benchmarks.md).
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cmd_bench_store.h"

int cmd_bench_log(int argc, char **argv);
int cmd_bench_chain(int argc, char **argv);
int cmd_bench_failover(int argc, char **argv);
int cmd_bench_straggler(int argc, char **argv);

int cmd_bench(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        FILE *f = argc < 2 ? stderr : stdout;
        fprintf(f, "usage: rewind bench (log|store|chain|failover|straggler) [options]\n\n"
                   "  log    ingest rate vs a raw LMDB append of the same records, per\n"
                   "         durability mode; flow-query export vs tcpdump\n"
                   "  store  state store ops/s per backend vs plain LMDB puts and plain\n"
                   "         pipelined Redis INCRBY\n"
                   "  chain  every chain of the catalog, fault tolerant vs --no-ft:\n"
                   "         throughput, latency, and what FT adds per NF\n"
                   "  failover  a chain healthy vs under a kill storm: throughput ratio,\n"
                   "         detection and recovery times\n"
                   "  straggler  a chain healthy, with a 10x slow worker, and with that\n"
                   "         worker cloned: throughput ratios, time to detect\n");
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    if (!strcmp(argv[1], "log"))
        return cmd_bench_log(argc - 1, argv + 1);
    if (!strcmp(argv[1], "chain"))
        return cmd_bench_chain(argc - 1, argv + 1);
    if (!strcmp(argv[1], "failover"))
        return cmd_bench_failover(argc - 1, argv + 1);
    if (!strcmp(argv[1], "straggler"))
        return cmd_bench_straggler(argc - 1, argv + 1);
    if (!strcmp(argv[1], "store"))
        return cmd_bench_store(argc - 1, argv + 1);
    cli_error("bench: unknown benchmark '%s'", argv[1]);
    return EXIT_USAGE;
}
