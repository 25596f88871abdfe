# Stragglers: slow workers found and cloned, the slower copy retired (test_straggler.c).
rw_add_test(test_straggler test_straggler.c LIBS rw_itest TIMEOUT 900 LABELS chaos
            CASES "long:^a 50x straggler")
