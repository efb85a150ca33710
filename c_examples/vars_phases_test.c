/* The per-variable calls sharded by layers, from C, in float and double.
 *
 * A model of S = 4 parameter tensors (one buffer per task and tensor; task 2
 * has no gradient for the last tensor, a task-specific head), T = 3 tasks.
 * Two "ranks" own the tensors 0..2 and 2..4: each computes its partial Gram
 * with pcgrad_gram_vars over its own buffers only (the others NULL), the
 * partials are summed (the all-reduce), pcgrad_coefficients runs on the sum,
 * and each rank applies pcgrad_apply_merged_vars / pcgrad_apply_projected_vars
 * to its own tensors. The outputs must equal one pcgrad_merge_vars /
 * pcgrad_project_vars call bit for bit (the values are multiples of 1/8, so
 * every dot product is exact whatever the split), and a refused call (a bad
 * variable range) must leave every output untouched.
 *
 * Prints the number of checks passed; exits 1 on any mismatch. */
#include <pcgrad.h>

#include <stdio.h>
#include <string.h>

enum { T = 3, S = 4, LMAX = 17, RANKS = 2 };
static const size_t SEGS[S] = {5, 1, 17, 7};
static const size_t CUT[RANKS + 1] = {0, 2, 4};

static int passed, failed;

static void check(int ok, const char *what) {
    if (ok) {
        passed++;
    } else {
        failed++;
        fprintf(stderr, "FAIL: %s\n", what);
    }
}

static int present(size_t t, size_t s) { return !(t == 2 && s == 3); }

static double value(size_t t, size_t s, size_t i) {
    double base = (double)((s * 7 + i * 3 + 1) % 11) * 0.25 - 1.25;
    double noise = (double)((i + t * 5 + s) % 7) * 0.125 - 0.375;
    return (t % 2 == 0) ? base + noise : noise - base;
}

static double WS[4096];

/* The same test for one element type: TYPE, and the suffix of its entry
 * points (nothing for float, _f64 for double). */
#define VARS_TEST(TYPE, SUF)                                                                  \
    static void test_##TYPE(void) {                                                           \
        static TYPE g[T][S][LMAX], one_g[T][S][LMAX], out[S][LMAX], one[S][LMAX];            \
        static TYPE proj_out[S][LMAX], one_proj[S][LMAX];                                     \
        const TYPE *cg[T * S];                                                                \
        TYPE *mg[T * S], *outs[S], *one_outs[S], *proj_outs[S], *one_proj_outs[S];            \
        double gram[2 * T * T], sum[T * T], coef[T * T + 2 * T], matrix[T * T];              \
        size_t need = 0, t, s, k, r;                                                          \
        pcgrad_config cfg;                                                                    \
        check(pcgrad_config_default(&cfg) == PCGRAD_OK, "config");                            \
        cfg.mode = PCGRAD_MODE_SIMULTANEOUS;                                                  \
        check(pcgrad_workspace_len_vars(T, S, &need) == PCGRAD_OK && need <= 4096, "ws len"); \
        for (t = 0; t < T; t++)                                                               \
            for (s = 0; s < S; s++)                                                           \
                for (k = 0; k < SEGS[s]; k++) g[t][s][k] = one_g[t][s][k] = (TYPE)value(t, s, k); \
        for (s = 0; s < S; s++) {                                                             \
            outs[s] = out[s];                                                                 \
            one_outs[s] = one[s];                                                             \
            proj_outs[s] = proj_out[s];                                                       \
            one_proj_outs[s] = one_proj[s];                                                   \
        }                                                                                     \
        for (t = 0; t < T; t++)                                                               \
            for (s = 0; s < S; s++) {                                                         \
                cg[t * S + s] = present(t, s) ? g[t][s] : NULL;                               \
                mg[t * S + s] = present(t, s) ? one_g[t][s] : NULL;                           \
            }                                                                                 \
        /* The one call, with the Gram matrix as diagnostic. */                               \
        check(pcgrad_merge_vars##SUF(&cfg, cg, T * S, SEGS, S, T, one_outs, S, NULL, matrix, \
                                     T * T, WS, need) == PCGRAD_OK,                           \
              #TYPE " merge_vars");                                                           \
        check(pcgrad_project_vars##SUF(&cfg, mg, T * S, SEGS, S, T, one_proj_outs, S, NULL,  \
                                       NULL, 0, WS, need) == PCGRAD_OK,                       \
              #TYPE " project_vars");                                                         \
        /* Phase 1 per rank over its own tensors, then the all-reduce. */                     \
        memset(sum, 0, sizeof sum);                                                           \
        for (r = 0; r < RANKS; r++) {                                                         \
            const TYPE *mine[T * S];                                                          \
            for (k = 0; k < T * S; k++)                                                       \
                mine[k] = (k % S >= CUT[r] && k % S < CUT[r + 1]) ? cg[k] : NULL;             \
            memset(gram, 0, sizeof gram);                                                     \
            check(pcgrad_gram_vars##SUF(mine, T * S, SEGS, S, T, CUT[r], CUT[r + 1], gram,    \
                                        2 * T * T, WS, need) == PCGRAD_OK,                    \
                  #TYPE " gram_vars");                                                        \
            for (k = 0; k < T * T; k++) sum[k] += gram[k];                                    \
        }                                                                                     \
        check(memcmp(sum, matrix, sizeof sum) == 0, #TYPE " sharded Gram = one call's");      \
        check(pcgrad_coefficients(&cfg, sum, T * T, T, NULL, coef, T * T + 2 * T) == PCGRAD_OK, \
              #TYPE " coefficients");                                                         \
        /* A bad range is refused before anything is written. */                              \
        memset(out, 0x5a, sizeof out);                                                        \
        check(pcgrad_apply_merged_vars##SUF(cg, T * S, SEGS, S, coef, T * T + 2 * T, T,      \
                                            PCGRAD_REDUCTION_MEAN, 3, 2, outs, 1, WS,         \
                                            need) == PCGRAD_ERROR_INVALID_RANGE,              \
              #TYPE " bad range refused");                                                    \
        {                                                                                     \
            int untouched = 1;                                                                \
            const unsigned char *b = (const unsigned char *)out;                              \
            for (k = 0; k < sizeof out; k++) untouched &= b[k] == 0x5a;                       \
            check(untouched, #TYPE " refused call wrote nothing");                            \
        }                                                                                     \
        /* Phase 3 per rank. */                                                               \
        for (r = 0; r < RANKS; r++) {                                                         \
            size_t lo = CUT[r], hi = CUT[r + 1];                                              \
            check(pcgrad_apply_merged_vars##SUF(cg, T * S, SEGS, S, coef, T * T + 2 * T, T,  \
                                                PCGRAD_REDUCTION_MEAN, lo, hi, outs + lo,     \
                                                hi - lo, WS, need) == PCGRAD_OK,              \
                  #TYPE " apply_merged_vars");                                                \
        }                                                                                     \
        for (r = 0; r < RANKS; r++) {                                                         \
            size_t lo = CUT[r], hi = CUT[r + 1];                                              \
            TYPE *mine[T * S];                                                                \
            for (k = 0; k < T * S; k++)                                                       \
                mine[k] = (k % S >= lo && k % S < hi && cg[k]) ? g[k / S][k % S] : NULL;      \
            check(pcgrad_apply_projected_vars##SUF(mine, T * S, SEGS, S, coef,                \
                                                   T * T + 2 * T, T, PCGRAD_REDUCTION_MEAN,   \
                                                   lo, hi, proj_outs + lo, hi - lo, WS,       \
                                                   need) == PCGRAD_OK,                        \
                  #TYPE " apply_projected_vars");                                             \
        }                                                                                     \
        for (s = 0; s < S; s++) {                                                             \
            check(memcmp(out[s], one[s], SEGS[s] * sizeof(TYPE)) == 0,                       \
                  #TYPE " sharded merged = one call's");                                      \
            check(memcmp(proj_out[s], one_proj[s], SEGS[s] * sizeof(TYPE)) == 0,             \
                  #TYPE " sharded projected merged = one call's");                            \
            for (t = 0; t < T; t++)                                                           \
                check(memcmp(g[t][s], one_g[t][s], SEGS[s] * sizeof(TYPE)) == 0,             \
                      #TYPE " sharded projection = one call's");                              \
        }                                                                                     \
    }

VARS_TEST(float, )
VARS_TEST(double, _f64)

int main(void) {
    test_float();
    test_double();
    printf("vars_phases_test: %d checks passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
