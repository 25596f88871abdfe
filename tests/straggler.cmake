# Stragglers: slow workers found and cloned, the slower copy retired (test_straggler.c).
# Serial: detection compares a worker's CPU share with its peers' and with what
# the machine gives one process; another test's dozen processes beside it make
# the whole machine slow, and a 50x straggler among them was not told apart
# (a CI run: no clone in 6 s). Operators' machines are not the suite's.
rw_add_test(test_straggler test_straggler.c LIBS rw_itest TIMEOUT 900 LABELS chaos
            CASES "long:^a 50x straggler" "serial:.")
