rw_add_test(test_run test_run.c LIBS rw_itest rw_logger
            CASES "chaos:^--no-ft: a (hung|killed)"
                  "fast:^edge filters|^--no-ft|^the firewall passes|^every process exits|^bad chain files")
# Issue 12: chain limits refused up front, the largest accepted chains run, a
# full disk ends a run with exit 4 and whole reports (mounts tmpfs: root only).
rw_add_test(test_limits test_limits.c LIBS rw_itest rw_logger TIMEOUT 900
            CASES "long:^chains up to the descriptor limit|^a full disk ends"
                  "fast,timeout=120:^a chain past a limit|^SIGTERM while the disk")
