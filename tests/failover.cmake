# Failover end to end: kills, hangs, chaos over the catalog, Redis, the LMDB write
# lock (test_failover.c). RW_LONG=1 in the environment runs the long version.
# Every case kills or stops workers; a case keeps the whole binary's old timeout,
# for RW_LONG=1 (make soak). The catalog chaos case keeps 30 min of room: in
# Debug on 2 shared cores it took 541 s before chaos spared replacements that
# had not moved W yet (docs/design-notes.md).
rw_add_test(test_failover test_failover.c LIBS rw_itest rw_nfworker PkgConfig::LMDB TIMEOUT 900
            LABELS chaos
            CASES "long:^chaos over every catalog chain" "long:^stalls and kills"
                  "timeout=1800:^chaos over every catalog chain")
