rw_add_test(test_run test_run.c LIBS rw_itest rw_logger)
