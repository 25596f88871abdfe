rw_add_test(test_nf_portscan test_nf_portscan.c LIBS rw_itest rw_logger)
