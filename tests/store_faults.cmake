rw_add_test(test_store_faults test_store_faults.c LIBS rw_itest TIMEOUT 300)
