rw_add_test(test_nf_lb test_nf_lb.c LIBS rw_itest)
