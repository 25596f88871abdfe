# In-process units. A case that kills a process of its own is labelled chaos.
rw_add_test(test_link test_link.c LIBS rw_link TIMEOUT 120 LABELS fast inproc
            CASES "chaos:^a killed")
rw_add_test(test_dedup test_dedup.c LIBS rw_link LABELS fast inproc)
rw_add_test(test_sink test_sink.c LIBS rw_itest rw_sink rw_link rw_logger LABELS fast inproc
            CASES "chaos,-inproc:^kill -9 of a run")
rw_add_test(test_worker test_worker.c LIBS rw_nfworker rw_nfs rw_chain rw_store LABELS fast inproc)
