/*
 * test_dedup.c - the duplicate filter at worker inputs and the sink: exact, and
 * bounded by the trim watermark.
 */
#include <string.h>

#include "link.h"
#include "testutil.h"

static void test_seen_once(void)
{
    struct dedup d;
    CU_ASSERT_EQUAL_FATAL(dedup_init(&d, 4), 0);
    for (uint64_t c = 0; c < 100000; c++) /* grows well past its first size */
        CU_ASSERT_EQUAL(dedup_seen(&d, c, (uint16_t)(c % 3)), 0);
    for (uint64_t c = 0; c < 100000; c += 7)
        CU_ASSERT_EQUAL(dedup_seen(&d, c, (uint16_t)(c % 3)), 1);
    CU_ASSERT_EQUAL(dedup_seen(&d, 5, 1), 0); /* same clock, other sub: new */
    dedup_free(&d);
}

static void test_trim_bounds_memory(void)
{
    struct dedup d;
    CU_ASSERT_EQUAL_FATAL(dedup_init(&d, 10), 0);
    for (uint64_t c = 0; c < 1000000; c++) {
        CU_ASSERT_EQUAL(dedup_seen(&d, c, 0), 0);
        if (c % 10000 == 0)
            dedup_trim(&d, c > 5000 ? c - 5000 : 0);
    }
    CU_ASSERT_TRUE(d.mask + 1 <= 65536);           /* not a million entries */
    CU_ASSERT_EQUAL(dedup_seen(&d, 10, 0), 1);     /* below G: counts as seen */
    CU_ASSERT_EQUAL(dedup_seen(&d, 999999, 0), 1); /* recent: remembered */
    dedup_free(&d);
}

static void add(CU_pSuite s)
{
    CU_add_test(s, "each (clock, sub) is new once, then seen", test_seen_once);
    CU_add_test(s, "trimming below G keeps memory bounded", test_trim_bounds_memory);
}

int main(void)
{
    return tu_main("dedup", add);
}
