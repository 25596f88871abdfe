/*
 * cmd_nat.c - `rewind nat who RUN_DIR --port P --at T`: which inside endpoint
 * held an external port of the run's NAT at a time (nfs/nat/nat_who.c), the
 * question an abuse report asks of a carrier-grade NAT.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "nfs.h"

#define MAX_HOLDS 64

static void usage(FILE *f)
{
    fprintf(f, "usage: rewind nat who RUN_DIR --port P --at T [--proto tcp|udp|icmp] [--json]\n\n"
               "Which inside endpoint held external port P at time T, with the mapping's\n"
               "start and end, from the nat.map and nat.unmap events of the run in RUN_DIR\n"
               "(its alerts.json). A mapping holds its port from its nat.map up to, not\n"
               "including, its nat.unmap. The events are indexed into RUN_DIR/nat-events.mdb\n"
               "on first use (and brought up to date when alerts.json has grown), so a\n"
               "question is one seek and a walk over that port's earlier events, not a\n"
               "read of the whole file.\n\n"
               "  --port P       the external port (for ICMP echo: the identifier)\n"
               "  --at T         epoch seconds, RFC 3339 (2026-11-22T11:00:00+01:00) or a date\n"
               "  --proto P      tcp, udp or icmp (default: all three)\n"
               "  --json         an array of objects: internal, external, remote, proto,\n"
               "                 from, until (null while still held), nf, reason,\n"
               "                 map_clock\n\n"
               "Exit: 0 answered (also when no one held the port: nothing printed, or []);\n"
               "1 failed; 2 usage; 3 alerts.json holds a nat event that does not parse;\n"
               "4 out of disk space for the index.\n");
}

static int cmd_nat_who(int argc, char **argv)
{
    static const struct option opts[] = {
        {"port", required_argument, 0, 'p'},  {"at", required_argument, 0, 'a'},
        {"proto", required_argument, 0, 'P'}, {"json", no_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'},        {0, 0, 0, 0}};
    uint64_t port = 0, at = 0;
    bool have_port = false, have_at = false, json = false;
    uint8_t proto = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            if (cli_parse_u64(optarg, &port) || port == 0 || port > 65535)
                return cli_error("--port: '%s' is not a port (1-65535)", optarg), EXIT_USAGE;
            have_port = true;
            break;
        case 'a':
            if (cli_parse_time(optarg, &at))
                return cli_error("--at: '%s' is not a time", optarg), EXIT_USAGE;
            have_at = true;
            break;
        case 'P':
            proto = !strcmp(optarg, "tcp")    ? 6
                    : !strcmp(optarg, "udp")  ? 17
                    : !strcmp(optarg, "icmp") ? 1
                                              : 0;
            if (!proto)
                return cli_error("--proto: '%s' is not tcp, udp or icmp", optarg), EXIT_USAGE;
            break;
        case 'j':
            json = true;
            break;
        case 'h':
            usage(stdout);
            return EXIT_OK;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    const char *dir = optind < argc ? argv[optind++] : NULL;
    if (optind < argc)
        return cli_error("nat who: unexpected argument '%s'", argv[optind]), EXIT_USAGE;
    if (!dir || !have_port || !have_at)
        return cli_error("nat who: RUN_DIR, --port and --at are required"), EXIT_USAGE;
    struct nat_hold h[MAX_HOLDS];
    size_t n;
    struct rw_err e = {0};
    int rc = nat_who(dir, (uint16_t)port, proto, at, h, MAX_HOLDS, &n, &e);
    if (rc) {
        cli_error("nat who: %s", e.msg);
        return cli_exit_code(rc);
    }
    if (json)
        printf("[");
    for (size_t i = 0; i < n; i++) {
        char from[48], until[48] = "-";
        cli_fmt_time(h[i].from_ns, from, sizeof(from));
        if (h[i].released)
            cli_fmt_time(h[i].until_ns, until, sizeof(until));
        if (json) {
            static const char *const keys[] = {"internal", "external", "remote", "proto", "from"};
            const char *vals[] = {h[i].internal, h[i].external, h[i].remote, h[i].proto, from};
            printf("%s\n  {", i ? "," : "");
            for (int k = 0; k < 5; k++) {
                printf("\"%s\": ", keys[k]);
                cli_print_json_string(vals[k]);
                printf(", ");
            }
            printf("\"until\": ");
            if (h[i].released)
                cli_print_json_string(until);
            else
                printf("null");
            printf(", \"nf\": ");
            cli_print_json_string(h[i].nf);
            printf(", \"reason\": ");
            if (h[i].released)
                cli_print_json_string(h[i].reason);
            else
                printf("null");
            printf(", \"map_clock\": %" PRIu64 "}", h[i].map_clock);
        } else
            printf("%s %s held %s (remote %s) from %s until %s%s%s%s [%s, clock %" PRIu64 "]\n",
                   h[i].proto, h[i].internal, h[i].external, h[i].remote, from,
                   h[i].released ? until : "the end of the events", h[i].released ? " (" : "",
                   h[i].released ? h[i].reason : "", h[i].released ? ")" : "", h[i].nf,
                   h[i].map_clock);
    }
    if (json)
        printf("%s]\n", n ? "\n" : "");
    else if (!n)
        fprintf(stderr, "nat who: no mapping held port %" PRIu64 " then\n", port);
    return EXIT_OK;
}

int cmd_nat(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        FILE *f = argc < 2 ? stderr : stdout;
        fprintf(f, "usage: rewind nat who RUN_DIR --port P --at T [--proto P] [--json]\n\n"
                   "  who   which inside endpoint held an external port at a time\n");
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    if (!strcmp(argv[1], "who"))
        return cmd_nat_who(argc - 1, argv + 1);
    cli_error("nat: unknown subcommand '%s'", argv[1]);
    return EXIT_USAGE;
}
