rw_add_test(test_decode test_decode.c LIBS rw_itest TIMEOUT 600)
