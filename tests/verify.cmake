# rewind verify: equivalent runs pass, tampered and damaged ones are named (test_verify.c).
rw_add_test(test_verify test_verify.c LIBS rw_itest rw_logger TIMEOUT 120
            CASES "fast:^a damaged|^a tampered|^an output log cut short")
