# IP fragments end to end: reassembly at the root before the split (test_frag.c).
rw_add_test(test_frag test_frag.c LIBS rw_itest TIMEOUT 600
            CASES "chaos:under worker kills" "fast:^replay --to-port|^overlapping|^more datagrams")
