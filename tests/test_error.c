/*
 * test_error.c - the one error table (common/rw_error.h): every code once, named
 * and explained, and its exit status the one docs/operator.md documents. The doc
 * is parsed here so that the table and the doc cannot drift apart.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rw_common.h"
#include "testutil.h"

struct row {
    const char *name;
    int value, exit;
    const char *msg;
};

#define RW_ERROR_ROW(name, value, exit, msg) {#name, value, exit, msg},
static const struct row rows[] = {RW_ERROR_MAP(RW_ERROR_ROW)};
#undef RW_ERROR_ROW
#define NROWS (sizeof(rows) / sizeof(rows[0]))

/* docs/operator.md's "## Exit codes" table: the meaning of each numeric code
 * (NULL where the doc has no row). */
#define DOC_MAX 128
static char *doc_meaning[DOC_MAX];

/* Loaded by each case that reads it: ctest runs every case in its own process. */
static void load_doc(void)
{
    if (doc_meaning[0])
        return;
    char *md = tu_slurp(RW_OPERATOR_MD, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(md);
    char *p = strstr(md, "\n## Exit codes\n");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    char *end = strstr(p + 1, "\n## ");
    if (end)
        *end = '\0';
    for (char *line = strtok(p, "\n"); line; line = strtok(NULL, "\n")) {
        char *q;
        if (line[0] != '|' || line[1] != ' ')
            continue;
        long code = strtol(line + 2, &q, 10);
        if (q == line + 2 || strncmp(q, " | ", 3) || code < 0 || code >= DOC_MAX)
            continue;                          /* the header, its rule, 128+N */
        CU_ASSERT_PTR_NULL(doc_meaning[code]); /* each code documented once */
        doc_meaning[code] = strdup(q + 3);
    }
    free(md);
}

static void test_codes_distinct_named_explained(void)
{
    for (size_t i = 0; i < NROWS; i++) {
        CU_ASSERT_TRUE(rows[i].value <= 0);
        CU_ASSERT_TRUE(rows[i].name[0] != '\0');
        CU_ASSERT_TRUE(rows[i].msg[0] != '\0');
        CU_ASSERT_STRING_EQUAL(rw_err_name(rows[i].value), rows[i].name);
        CU_ASSERT_STRING_EQUAL(rw_strerror(rows[i].value), rows[i].msg);
        CU_ASSERT_EQUAL(rw_exit_code(rows[i].value), rows[i].exit);
        for (size_t j = 0; j < i; j++) {
            CU_ASSERT_NOT_EQUAL(rows[i].value, rows[j].value);
            CU_ASSERT_STRING_NOT_EQUAL(rows[i].name, rows[j].name);
        }
    }
    CU_ASSERT_STRING_EQUAL(rw_err_name(RW_ENOSPC), "RW_ENOSPC");
    CU_ASSERT_STRING_EQUAL(rw_err_name(STORE_EFULL), "STORE_EFULL");
}

static void test_unknown_code_says_so(void)
{
    CU_ASSERT_STRING_EQUAL(rw_strerror(-42), "unknown error -42");
    CU_ASSERT_STRING_EQUAL(rw_strerror(7), "unknown error 7");
    CU_ASSERT_PTR_NULL(rw_err_name(-42));
    CU_ASSERT_EQUAL(rw_exit_code(-42), 1);
}

/* Every exit status the table gives is documented, and every documented one is
 * given by some code. */
static void test_exit_codes_documented(void)
{
    load_doc();
    CU_ASSERT_PTR_NOT_NULL(doc_meaning[0]);
    for (size_t i = 0; i < NROWS; i++) {
        CU_ASSERT_TRUE_FATAL(rows[i].exit >= 0 && rows[i].exit < DOC_MAX);
        if (!doc_meaning[rows[i].exit])
            fprintf(stderr, "%s exits %d, which docs/operator.md does not list\n", rows[i].name,
                    rows[i].exit);
        CU_ASSERT_PTR_NOT_NULL(doc_meaning[rows[i].exit]);
    }
    for (int c = 0; c < DOC_MAX; c++) {
        bool given = false;
        for (size_t i = 0; i < NROWS; i++)
            given |= rows[i].exit == c;
        CU_ASSERT_TRUE(!doc_meaning[c] || given);
    }
}

/* The doc's words for a code's row name the fault the code stands for. */
static void test_exit_code_meanings(void)
{
    static const struct {
        int code;
        const char *words;
    } said[] = {
        {RW_OK, "done"},
        {RW_EIO, "I/O error"},
        {RW_EDPDK, "DPDK refused"},
        {RW_ENOENT, "missing log or trace"},
        {RW_ESTALLED, "did not answer in time"},
        {STORE_EBACKEND, "refused the connection"},
        {RW_EINVAL, "bad command line"},
        {STORE_EINUSE, "store that holds another run"},
        {RW_ECORRUPT, "damaged"},
        {RW_EINPUT, "damaged capture"},
        {RW_ENOSPC, "out of disk space"},
        {STORE_EFULL, "state store is full"},
    };
    load_doc();
    for (size_t i = 0; i < sizeof(said) / sizeof(said[0]); i++) {
        const char *m = doc_meaning[rw_exit_code(said[i].code)];
        bool ok = m && strstr(m, said[i].words);
        if (!ok)
            fprintf(stderr, "%s exits %d: docs/operator.md's row does not say '%s'\n",
                    rw_err_name(said[i].code), rw_exit_code(said[i].code), said[i].words);
        CU_ASSERT_TRUE(ok);
    }
    for (int c = 0; c < DOC_MAX; c++)
        free(doc_meaning[c]);
}

static void add(CU_pSuite s)
{
    CU_add_test(s, "every code is distinct, named and explained",
                test_codes_distinct_named_explained);
    CU_add_test(s, "an unknown code is named as such, with its number", test_unknown_code_says_so);
    CU_add_test(s, "every exit status of the table is in docs/operator.md and back",
                test_exit_codes_documented);
    CU_add_test(s, "the doc's row for a code's exit status names that fault",
                test_exit_code_meanings);
}

int main(void)
{
    return tu_main("error", add);
}
