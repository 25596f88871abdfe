rw_add_test(test_nf_trojan test_nf_trojan.c LIBS rw_itest
            CASES "chaos:^a stalled upstream" "fast:^the capture raises")
