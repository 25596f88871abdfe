rw_add_test(test_nf_portscan test_nf_portscan.c LIBS rw_itest rw_logger
            CASES "fast:^docs/chains|^a host benign first|^bad parameters")
