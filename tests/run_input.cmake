rw_add_test(test_run_input test_run_input.c LIBS rw_itest TIMEOUT 300 LABELS fast
            CASES "-fast:^what run and ingest write")
