# `rewind bench ... --json`: one object each, with the documented keys (test_bench.c).
rw_add_test(test_bench test_bench.c LIBS rw_itest TIMEOUT 300
            CASES "fast:bench store")
