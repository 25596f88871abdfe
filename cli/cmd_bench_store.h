/*
 * cmd_bench_store.h - `rewind bench store`, the state store benchmark (see
 * cmd_bench_store.c). argv[0] is the subcommand name ("store"); returns 0, 1 when
 * a measurement failed, 2 for a bad command line.
 */
#ifndef RW_CMD_BENCH_STORE_H
#define RW_CMD_BENCH_STORE_H

int cmd_bench_store(int argc, char **argv);

#endif
