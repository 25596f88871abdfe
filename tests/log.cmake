# Tests of the log: unit tests in-process, integration tests through `rewind`.
rw_add_test(test_flow test_flow.c LIBS rw_common LABELS fast inproc)
add_library(rw_itest STATIC itest.c)
target_link_libraries(rw_itest PUBLIC rw_testutil rw_logger)
target_compile_options(rw_itest PRIVATE ${RW_FAILALLOC_EXEMPT})
# test_log: the log's API in-process, but for the cases that run `rewind`.
rw_add_test(test_log test_log.c LIBS rw_itest LABELS fast inproc
            CASES "-inproc:^log verify reports|^replay skips|^one writer per log")
rw_add_test(test_ingest test_ingest.c LIBS rw_itest
            CASES "fast:^a second ingest|^flow and BPF|^host, net, port and proto|^log flows and log hosts|^a flow on the busiest|^a time window|^a live port|^every command|^replay through a DPDK port")
rw_add_test(test_badinput test_badinput.c LIBS rw_itest LABELS fast
            CASES "chaos:^a replay killed mid-write")
rw_add_test(test_crash test_crash.c LIBS rw_itest TIMEOUT 600 LABELS chaos long)

# Fuzz targets (libFuzzer: `make fuzz`); here their saved corpora replay under ASan.
foreach(target block flow)
  add_executable(fuzz_${target}_corpus fuzz/fuzz_${target}.c fuzz/replay_corpus.c)
  target_link_libraries(fuzz_${target}_corpus PRIVATE rw_logger PkgConfig::ZLIB)
  target_include_directories(fuzz_${target}_corpus PRIVATE ${CMAKE_SOURCE_DIR}/logger)
  add_test(NAME fuzz_${target}_corpus
           COMMAND fuzz_${target}_corpus ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/${target})
  set_tests_properties(fuzz_${target}_corpus PROPERTIES ENVIRONMENT "${RW_TEST_ENV}" TIMEOUT 60
                       LABELS "fast;inproc")
endforeach()

# Every NF of the catalog under arbitrary packets (fuzz/fuzz_nf.c).
add_executable(fuzz_nf_corpus fuzz/fuzz_nf.c fuzz/replay_corpus.c)
target_link_libraries(fuzz_nf_corpus PRIVATE rw_nfs rw_nf rw_chain)
add_test(NAME fuzz_nf_corpus COMMAND fuzz_nf_corpus ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/nf)
set_tests_properties(fuzz_nf_corpus PROPERTIES ENVIRONMENT "${RW_TEST_ENV}" TIMEOUT 60
                     LABELS "fast;inproc")

# libFuzzer builds of the same targets: cmake -DCMAKE_C_COMPILER=clang -DRW_FUZZ=ON (make fuzz)
if(RW_FUZZ)
  foreach(target block flow nf)
    add_executable(fuzz_${target} fuzz/fuzz_${target}.c)
    target_link_libraries(fuzz_${target} PRIVATE rw_nfs rw_nf rw_chain rw_logger PkgConfig::ZLIB)
    target_include_directories(fuzz_${target} PRIVATE ${CMAKE_SOURCE_DIR}/logger)
    target_link_options(fuzz_${target} PRIVATE -fsanitize=fuzzer)
  endforeach()
endif()
