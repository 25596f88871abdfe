# Failover end to end: kills, hangs, chaos over the catalog, Redis, the LMDB write
# lock (test_failover.c). RW_LONG=1 in the environment runs the long version.
# Every case kills or stops workers; a case keeps the whole binary's old timeout,
# for RW_LONG=1 (make soak).
rw_add_test(test_failover test_failover.c LIBS rw_itest rw_nfworker PkgConfig::LMDB TIMEOUT 900
            LABELS chaos
            CASES "long:^chaos over every catalog chain" "long:^stalls and kills")
