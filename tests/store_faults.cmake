# Both cases stop redis-server (SIGSTOP).
rw_add_test(test_store_faults test_store_faults.c LIBS rw_itest TIMEOUT 300 LABELS chaos)
