/*
 * main.c - the `rewind` executable: one binary, subcommands in a table.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

#define REWIND_VERSION "0.1.0"

struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
};

static const struct command commands[] = {
    {"run", cmd_run, "run a chain of NFs (docs/chain-file.md)"},
    {"log", cmd_log, "ingest packets into a durable log; stat and verify logs"},
    {"replay", cmd_replay, "read packets back out of a log (pcapng/pcap, DPDK port)"},
    {"bench", cmd_bench, "measure throughput against a baseline in the same run"},
    {"chaos", cmd_chaos, "run a chain while killing and stalling its workers"},
    {"nat", cmd_nat, "NAT attribution: who held an external port at a time"},
    {"verify", cmd_verify_runs, "compare two runs clock by clock (design.md: The guarantee)"},
    {"worker", cmd_worker, "one NF instance (internal: started by `rewind run`)"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: rewind [--umask MODE] COMMAND [ARGS...]\n\n"
               "Fault tolerance for chains of stateful network functions.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n`rewind COMMAND --help` describes a command. Exit codes: 0 ok, 1 failed,\n"
               "2 usage, 3 damaged data found (intact data kept), 4 out of disk space;\n"
               "a trace run stopped by a signal before the end of its trace: 128 + the signal.\n\n"
               "What rewind writes (logs, stores, reports: packets and state) is private to\n"
               "its user: the umask is tightened to drop every group and other bit.\n"
               "  --umask MODE   use this umask instead (octal; 027 lets the group read)\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    /* Private by default: a run's files hold payloads and flow state. The umask
     * (inherited by the workers) covers every file and directory the parts and
     * their libraries (LMDB, libpcap, DPDK) create, without a mode in each. */
    mode_t mask = umask(077);
    umask(mask | 077);
    if (argc >= 3 && !strcmp(argv[1], "--umask")) {
        char *end;
        unsigned long m = strtoul(argv[2], &end, 8);
        if (!*argv[2] || *end || m > 0777) {
            cli_error("--umask: '%s' is not an octal mode (e.g. 027)", argv[2]);
            return EXIT_USAGE;
        }
        umask((mode_t)m);
        argc -= 2;
        argv += 2;
        if (argc < 2) {
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    const char *c = argv[1];
    if (!strcmp(c, "--help") || !strcmp(c, "-h") || !strcmp(c, "help")) {
        usage(stdout);
        return EXIT_OK;
    }
    if (!strcmp(c, "--version")) {
        printf("rewind %s\n", REWIND_VERSION);
        return EXIT_OK;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (!strcmp(c, commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    cli_error("unknown command '%s' (try `rewind --help`)", c);
    return EXIT_USAGE;
}
