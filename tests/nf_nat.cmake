rw_add_test(test_nf_nat test_nf_nat.c LIBS rw_itest rw_logger)
