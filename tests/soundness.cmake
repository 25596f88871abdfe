# The guarantee where it used to break: order across parallel instances, a long
# run in a small store, NF state bounded by live flows (test_soundness.c).
# RW_LONG=1 runs the 1 M-packet version.
rw_add_test(test_soundness test_soundness.c LIBS rw_itest TIMEOUT 1800
            CASES "long:^parallel instances|^NF state stays bounded" "chaos:^parallel instances"
                  "fast:^a full store")
