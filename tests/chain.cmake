# The chain file parser (chain/chain.c) against good and bad fixtures in chains/.
rw_add_test(test_chain test_chain.c LIBS rw_chain TIMEOUT 60 LABELS fast inproc)
target_compile_definitions(test_chain PRIVATE RW_CHAINS_DIR="${CMAKE_CURRENT_SOURCE_DIR}/chains")
