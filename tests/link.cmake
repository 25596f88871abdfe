rw_add_test(test_link test_link.c LIBS rw_link TIMEOUT 120)
rw_add_test(test_dedup test_dedup.c LIBS rw_link)
rw_add_test(test_sink test_sink.c LIBS rw_itest rw_sink rw_link rw_logger)
rw_add_test(test_worker test_worker.c LIBS rw_nfworker rw_nfs rw_chain rw_store)
