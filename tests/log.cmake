# Tests of the log: unit tests in-process, integration tests through `rewind`.
rw_add_test(test_flow test_flow.c LIBS rw_common)
rw_add_test(test_log test_log.c LIBS rw_logger)
add_library(rw_itest STATIC itest.c)
target_link_libraries(rw_itest PUBLIC rw_testutil)
rw_add_test(test_ingest test_ingest.c LIBS rw_itest)
rw_add_test(test_badinput test_badinput.c LIBS rw_itest)
rw_add_test(test_crash test_crash.c LIBS rw_itest TIMEOUT 600)
