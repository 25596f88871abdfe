rw_add_test(test_jumbo test_jumbo.c LIBS rw_itest TIMEOUT 300
            CASES "fast:up to max_frame|connection to the VIP")
