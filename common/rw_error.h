/*
 * rw_error.h - every error code of rewind, listed once (as libuv's UV_ERRNO_MAP).
 *
 * A part returns 0 or one of these codes; the command line turns the code into
 * the process's exit status with rw_exit_code, so the exit column here is the
 * table of docs/operator.md ("Exit codes"), and tests/test_error.c holds the two
 * to each other. The state store's codes keep their STORE_ names and values
 * (-101...): its Redis script (store_redis.lua) answers with those numbers.
 */
#ifndef RW_ERROR_H
#define RW_ERROR_H

/* X(NAME, value, exit status, message), each under what it means */
#define RW_ERROR_MAP(X)                                                                            \
    X(RW_OK, 0, 0, "ok")                                                                           \
    /* bad argument or option */                                                                   \
    X(RW_EINVAL, -1, 2, "invalid argument")                                                        \
    /* an I/O or library call failed */                                                            \
    X(RW_EIO, -2, 1, "I/O error")                                                                  \
    /* out of disk space (or map space that cannot grow) */                                        \
    X(RW_ENOSPC, -3, 4, "out of space")                                                            \
    /* stored data fails its checks */                                                             \
    X(RW_ECORRUPT, -4, 3, "data corrupted")                                                        \
    /* allocation failed */                                                                        \
    X(RW_ENOMEM, -5, 1, "out of memory")                                                           \
    /* no such file, segment or key */                                                             \
    X(RW_ENOENT, -6, 1, "not found")                                                               \
    /* DPDK refused (EAL, port, pool) */                                                           \
    X(RW_EDPDK, -7, 1, "DPDK error")                                                               \
    /* input file is damaged (truncated pcap...) */                                                \
    X(RW_EINPUT, -8, 3, "damaged input")                                                           \
    /* stopped by a signal before the end of a finite input (`rewind run` exits 128 + N) */        \
    X(RW_EINTR, -9, 1, "interrupted")                                                              \
    /* a service (the state store) did not answer within its timeout */                            \
    X(RW_ESTALLED, -10, 1, "no answer in time")                                                    \
    /* bad argument (NULL, key or value too long, bad slot) */                                     \
    X(STORE_EINVAL, -101, 1, "invalid argument")                                                   \
    /* store URL not understood */                                                                 \
    X(STORE_EURL, -102, 2, "bad store URL")                                                        \
    /* backend unreachable or failed; the op may be retried */                                     \
    X(STORE_EBACKEND, -103, 1, "store backend unavailable")                                        \
    /* LMDB map full (or Redis out of memory) */                                                   \
    X(STORE_EFULL, -104, 4, "store full")                                                          \
    /* per-flow object owned by another slot */                                                    \
    X(STORE_EOWNER, -105, 1, "object owned by another slot")                                       \
    /* the client's slot was claimed or transferred since attach */                                \
    X(STORE_EFENCED, -106, 1, "client fenced: slot taken over")                                    \
    /* op does not fit the object's type (incr on bytes...) */                                     \
    X(STORE_ETYPE, -107, 1, "wrong object type")                                                   \
    /* op clock below the trim watermark: cannot tell if applied */                                \
    X(STORE_ETRIMMED, -108, 1, "op below the trim watermark")                                      \
    /* value larger than the caller's buffer (*len says how big) */                                \
    X(STORE_ETOOBIG, -109, 1, "value too big")                                                     \
    /* allocation failed */                                                                        \
    X(STORE_ENOMEM, -110, 1, "out of memory")                                                      \
    /* a stored record fails its checks */                                                         \
    X(STORE_ECORRUPT, -111, 1, "store record corrupt")                                             \
    /* same op identity seen before for a different op kind */                                     \
    X(STORE_ECONFLICT, -112, 1, "op identity reused for a different op")                           \
    /* the store holds another run's state (`--force` clears it) */                                \
    X(STORE_EINUSE, -113, 2, "the store holds another run's state")                                \
    /* a refusal that is not this op's own answer */                                               \
    X(STORE_EREFUSED, -114, 1, "an op queued earlier was refused; its batch was dropped")          \
    /* a stalled or overloaded server: not retried, the op's fate unknown */                       \
    X(STORE_ESTALLED, -115, 1, "the store did not answer in time")

#define RW_ERROR_ENUM(name, value, exit, msg) name = value,
enum rw_rc { RW_ERROR_MAP(RW_ERROR_ENUM) };
#undef RW_ERROR_ENUM

/* The message of code ("unknown error -42" for a code not in the table: the
 * number is kept in a thread-local buffer until the next such call). */
const char *rw_strerror(int code);
/* The code's name ("RW_ENOSPC"), or NULL for a code not in the table. */
const char *rw_err_name(int code);
/* The process exit status for code: docs/operator.md's table; 1 for a code not
 * in the table (a failure). */
int rw_exit_code(int code);

#endif
