rw_add_test(test_nf_nat test_nf_nat.c LIBS rw_itest rw_logger
            CASES "fast:^FT and --no-ft|^malformed|^ICMP echo|^idle flows|^bad config")
