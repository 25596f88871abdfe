# The one error table (common/rw_error.h) against docs/operator.md's exit codes.
rw_add_test(test_error test_error.c LIBS rw_common TIMEOUT 60)
target_compile_definitions(test_error PRIVATE RW_OPERATOR_MD="${CMAKE_SOURCE_DIR}/docs/operator.md")
