rw_add_test(test_nf test_nf.c LIBS rw_nf)
