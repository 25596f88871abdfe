# Failover end to end: kills, hangs, chaos over the catalog, Redis, the LMDB write
# lock (test_failover.c). RW_LONG=1 in the environment runs the long version.
rw_add_test(test_failover test_failover.c LIBS rw_itest rw_nfworker PkgConfig::LMDB TIMEOUT 900)
