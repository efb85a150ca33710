/* Every method of pcgrad.h through pcgrad_aggregate_flat on one T = 3,
 * N = 6 problem: the weights from pcgrad_method_weights (on the Gram matrix
 * of pcgrad_gram_flat) against the values the Rust API gives for the same
 * gradients (the table below; the Rust test `weights_of_the_c_example` in
 * src/ffi/tests/methods.rs prints and checks the same numbers), and the
 * merged gradient of the one call against sum_j w_j g_j.
 *
 * Prints one line per method; exits 1 on any mismatch. */
#include <pcgrad.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

enum { T = 3, N = 6, KINDS = 13 };

static const float G[T * N] = {
    1.0f, 0.0f, 2.0f, 0.0f, 1.0f, 0.5f,   /* */
    -1.0f, 1.0f, 0.0f, 0.5f, 0.0f, -1.0f, /* */
    0.5f, 0.5f, -1.0f, 1.0f, 0.25f, 0.0f,
};

static const char *const NAMES[KINDS] = {
    "pcgrad", "ppcgrad", "mgda", "upgrad", "dualproj", "cagrad", "imtl_g",
    "aligned_mtl", "nash_mtl", "gradvac", "mean", "sum", "random",
};

/* The Rust API's weights for each kind (zeroed parameters, fresh state,
 * PRNG seed 1). */
static const double WANT[KINDS][T] = {
#include "methods_want.inc"
};

int main(void) {
    int failed = 0;
    static double ws[4096];
    double gram[2 * T * T] = {0};
    if (pcgrad_gram_flat(G, T * N, NULL, 0, NULL, 0, T, N, 0, N, gram, 2 * T * T) != PCGRAD_OK) {
        fprintf(stderr, "FAIL: pcgrad_gram_flat\n");
        return 1;
    }
    for (uint32_t k = 0; k < KINDS; k++) {
        pcgrad_rng rng = {1};
        double targets[T * T] = {0}, alpha[T] = {0}, w[T];
        uint64_t step = 0;
        pcgrad_method m;
        memset(&m, 0, sizeof m);
        m.kind = k;
        m.rng = &rng;
        m.targets = targets;
        m.targets_len = T * T;
        m.nash_alpha = alpha;
        m.nash_alpha_len = T;
        m.nash_step = &step;
        size_t need = 0, agg = 0;
        if (pcgrad_method_workspace_len(&m, T, &need) != PCGRAD_OK ||
            pcgrad_aggregate_workspace_len(&m, T, &agg) != PCGRAD_OK || agg > 4096) {
            fprintf(stderr, "FAIL: %s: workspace sizes\n", NAMES[k]);
            failed++;
            continue;
        }
        pcgrad_status s = pcgrad_method_weights(&m, gram, T * T, T, w, T, ws, need);
        double err = 0.0;
        for (int i = 0; i < T; i++) err = fmax(err, fabs(w[i] - WANT[k][i]) / fmax(1.0, fabs(WANT[k][i])));
        /* The one call, with the state reset to the same start. */
        rng.state = 1;
        memset(targets, 0, sizeof targets);
        memset(alpha, 0, sizeof alpha);
        step = 0;
        float merged[N];
        pcgrad_status a = pcgrad_aggregate_flat(&m, G, T * N, NULL, 0, NULL, 0, T, N, merged, N, ws, agg);
        double merr = 0.0;
        for (int c = 0; c < N; c++) {
            double want = 0.0;
            for (int i = 0; i < T; i++) want += w[i] * (double)G[i * N + c];
            /* PCGrad's default mean reduction divides by T. */
            if (k <= PCGRAD_METHOD_PPCGRAD) want /= T;
            merr = fmax(merr, fabs((double)merged[c] - want));
        }
        int ok = s == PCGRAD_OK && a == PCGRAD_OK && err <= 1e-12 && merr <= 1e-5;
        printf("%-12s w = (%+.6f, %+.6f, %+.6f)  |w - rust| = %.1e  |merged - sum w g| = %.1e  %s\n", NAMES[k],
               w[0], w[1], w[2], err, merr, ok ? "ok" : "FAIL");
        if (!ok) failed++;
    }
    /* Mean and sum are exact. */
    if (WANT[PCGRAD_METHOD_SUM][0] != 1.0 || WANT[PCGRAD_METHOD_MEAN][2] != 1.0 / 3.0) failed++;
    printf("methods_test: %d of %d methods failed\n", failed, KINDS);
    return failed == 0 ? 0 : 1;
}
