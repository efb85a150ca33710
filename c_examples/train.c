/* Multi-task training in plain C with PCGrad from libpcgrad.
 *
 * A shared trunk (one tanh hidden layer) and one linear head per task, three
 * regression tasks whose targets pull the trunk in partly opposite
 * directions:
 *
 *   y0 = (a + b) . x / sqrt 2,   y1 = (a - b) . x / sqrt 2,
 *   y2 = (c - a) . x / sqrt 2,   plus Gaussian noise (sd 0.1),
 *
 * with a, b, c random unit vectors. Trained by mini-batch SGD three times
 * from the same initial weights and batches:
 *
 *  - plain:   no surgery; the trunk gets the mean of the task gradients and
 *             each head its own task's gradient (the merge rule of the
 *             library's mean reduction, without projections);
 *  - pcgrad:  sequential projection in a fresh random order per step (the
 *             paper's Algorithm 1), from a pcgrad_rng this program keeps;
 *  - ppcgrad: simultaneous projection (the seed's PPCGrad).
 *
 * The gradients stay where backpropagation wrote them, one buffer per
 * parameter tensor per task; a head has a gradient only for its own task
 * (NULL for the others). pcgrad_merge_vars writes the merged gradient
 * straight into the optimizer's per-tensor buffers: nothing is packed or
 * copied.
 *
 * Deterministic (own PRNG, fixed seed). Exits 1 when training diverges
 * (a non-finite loss, or a held-out loss that does not fall below half its
 * initial value) or when a library call fails. */
#include <pcgrad.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { D = 8, H = 8, T = 3, NTRAIN = 512, NTEST = 2048, BATCH = 32, STEPS = 3000 };
enum { S = 2 + 2 * T }; /* variables: W1, b1, then w2[t], b2[t] per task */
#define LR 0.05f
#define NOISE 0.1

/* ---- PRNG (SplitMix64) and Gaussian samples ---------------------------- */

typedef struct {
    uint64_t s;
} prng;

static uint64_t next_u64(prng *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* uniform in (0, 1] */
static double uniform(prng *r) {
    return (double)((next_u64(r) >> 11) + 1) * (1.0 / 9007199254740992.0);
}

static double gauss(prng *r) {
    const double pi = 3.14159265358979323846;
    return sqrt(-2.0 * log(uniform(r))) * cos(2.0 * pi * uniform(r));
}

/* ---- data ------------------------------------------------------------- */

static float xtr[NTRAIN][D], ytr[NTRAIN][T];
static float xte[NTEST][D], yte[NTEST][T];

static void unit(prng *r, double v[D]) {
    double n = 0.0;
    for (int i = 0; i < D; i++) {
        v[i] = gauss(r);
        n += v[i] * v[i];
    }
    for (int i = 0; i < D; i++) v[i] /= sqrt(n);
}

static void make_data(void) {
    prng r = {20240601u};
    double a[D], b[D], c[D], u[T][D];
    unit(&r, a);
    unit(&r, b);
    unit(&r, c);
    for (int i = 0; i < D; i++) {
        u[0][i] = (a[i] + b[i]) / sqrt(2.0);
        u[1][i] = (a[i] - b[i]) / sqrt(2.0);
        u[2][i] = (c[i] - a[i]) / sqrt(2.0);
    }
    for (int n = 0; n < NTRAIN + NTEST; n++) {
        float *x = n < NTRAIN ? xtr[n] : xte[n - NTRAIN];
        float *y = n < NTRAIN ? ytr[n] : yte[n - NTRAIN];
        for (int i = 0; i < D; i++) x[i] = (float)gauss(&r);
        for (int t = 0; t < T; t++) {
            double s = 0.0;
            for (int i = 0; i < D; i++) s += u[t][i] * x[i];
            y[t] = (float)(s + NOISE * gauss(&r));
        }
    }
}

/* ---- the network ------------------------------------------------------ */

typedef struct {
    float W1[H * D], b1[H]; /* shared trunk */
    float w2[T][H], b2[T];  /* one linear head per task */
} net;

static void init_net(net *m) {
    prng r = {7u};
    for (int k = 0; k < H * D; k++) m->W1[k] = (float)(gauss(&r) / sqrt((double)D));
    for (int k = 0; k < H; k++) m->b1[k] = 0.0f;
    for (int t = 0; t < T; t++) {
        for (int k = 0; k < H; k++) m->w2[t][k] = (float)(gauss(&r) / sqrt((double)H));
        m->b2[t] = 0.0f;
    }
}

static void hidden(const net *m, const float *x, float h[H]) {
    for (int j = 0; j < H; j++) {
        float z = m->b1[j];
        for (int i = 0; i < D; i++) z += m->W1[j * D + i] * x[i];
        h[j] = tanhf(z);
    }
}

static float head(const net *m, int t, const float h[H]) {
    float y = m->b2[t];
    for (int j = 0; j < H; j++) y += m->w2[t][j] * h[j];
    return y;
}

/* Held-out mean squared error per task. */
static void test_loss(const net *m, double loss[T]) {
    float h[H];
    for (int t = 0; t < T; t++) loss[t] = 0.0;
    for (int n = 0; n < NTEST; n++) {
        hidden(m, xte[n], h);
        for (int t = 0; t < T; t++) {
            double e = (double)head(m, t, h) - yte[n][t];
            loss[t] += e * e;
        }
    }
    for (int t = 0; t < T; t++) loss[t] /= NTEST;
}

/* Per-task gradient buffers, laid out as a framework would keep them: one
 * buffer per parameter tensor, and a head only for its own task. */
typedef struct {
    float W1[T][H * D], b1[T][H];
    float w2[T][H], b2[T][1];
} task_grads;

/* Backpropagation of task t's batch loss (mean of squared errors / 2). */
static void backward(const net *m, const int *batch, task_grads *g) {
    float h[H];
    memset(g, 0, sizeof *g);
    for (int k = 0; k < BATCH; k++) {
        const float *x = xtr[batch[k]];
        hidden(m, x, h);
        for (int t = 0; t < T; t++) {
            float dy = (head(m, t, h) - ytr[batch[k]][t]) / BATCH;
            g->b2[t][0] += dy;
            for (int j = 0; j < H; j++) {
                g->w2[t][j] += dy * h[j];
                float dz = dy * m->w2[t][j] * (1.0f - h[j] * h[j]);
                g->b1[t][j] += dz;
                for (int i = 0; i < D; i++) g->W1[t][j * D + i] += dz * x[i];
            }
        }
    }
}

/* ---- training --------------------------------------------------------- */

enum method { PLAIN, PCGRAD, PPCGRAD };
static const char *const method_name[] = {"plain", "pcgrad", "ppcgrad"};

typedef struct {
    double loss[T];
    double conflicting_pairs; /* per step */
    double projections;       /* per step */
    double steps_with_conflict; /* fraction */
    double cos[T][T];         /* mean over steps of cos(g_i, g_j) */
    double curve[4][T];       /* held-out MSE after checkpoints[c] steps */
} result;

#define NCHECK 4
static const int checkpoints[NCHECK] = {30, 100, 300, 1000};

static const size_t segments[S] = {H * D, H, H, 1, H, 1, H, 1};

static int train(enum method method, double *workspace, size_t workspace_len, result *res) {
    net m;
    task_grads g;
    struct {
        float W1[H * D], b1[H], w2[T][H], b2[T][1];
    } merged, scratch; /* the optimizer's gradient, one buffer per tensor */
    const float *grads[T * S];
    float *out[S], *scratch_out[S];
    prng data = {99u};          /* the same batches for every method */
    pcgrad_rng order = {12345u}; /* PCGrad's task order; advances every step */
    pcgrad_config config = {0};
    pcgrad_stats stats;
    double cosine[T * T];
    int batch[BATCH];

    init_net(&m);
    memset(res, 0, sizeof *res);

    /* The pointer tables never change: the buffers are reused every step. */
    for (int t = 0; t < T; t++) {
        grads[t * S + 0] = g.W1[t];
        grads[t * S + 1] = g.b1[t];
        for (int u = 0; u < T; u++) {
            grads[t * S + 2 + 2 * u] = u == t ? g.w2[t] : NULL; /* no gradient: */
            grads[t * S + 3 + 2 * u] = u == t ? g.b2[t] : NULL; /* another task's head */
        }
    }
    out[0] = merged.W1;
    out[1] = merged.b1;
    scratch_out[0] = scratch.W1;
    scratch_out[1] = scratch.b1;
    for (int u = 0; u < T; u++) {
        out[2 + 2 * u] = merged.w2[u];
        out[3 + 2 * u] = merged.b2[u];
        scratch_out[2 + 2 * u] = scratch.w2[u];
        scratch_out[3 + 2 * u] = scratch.b2[u];
    }

    config.reduction = PCGRAD_REDUCTION_MEAN;
    config.matrix = PCGRAD_MATRIX_COSINE;
    config.check_finite = 1; /* a diverging run stops with PCGRAD_ERROR_NON_FINITE */
    if (method == PCGRAD) {
        config.mode = PCGRAD_MODE_SEQUENTIAL;
        config.order = PCGRAD_ORDER_SHUFFLED;
        config.rng = &order;
    } else {
        config.mode = PCGRAD_MODE_SIMULTANEOUS;
    }

    for (int step = 0; step < STEPS; step++) {
        for (int k = 0; k < BATCH; k++) batch[k] = (int)(next_u64(&data) % NTRAIN);
        backward(&m, batch, &g);

        /* plain still asks the library for the diagnostics (into scratch
         * buffers), so the conflict counts compare along each trajectory. */
        pcgrad_status s = pcgrad_merge_vars(&config, grads, T * S, segments, S, T,
                                            method == PLAIN ? scratch_out : out, S, &stats, cosine,
                                            T * T, workspace, workspace_len);
        if (s != PCGRAD_OK) {
            fprintf(stderr, "%s, step %d: pcgrad_merge_vars: %s\n", method_name[method], step,
                    pcgrad_status_str(s));
            return 1;
        }
        if (method == PLAIN) {
            for (int k = 0; k < H * D; k++) merged.W1[k] = (g.W1[0][k] + g.W1[1][k] + g.W1[2][k]) / T;
            for (int k = 0; k < H; k++) merged.b1[k] = (g.b1[0][k] + g.b1[1][k] + g.b1[2][k]) / T;
            memcpy(merged.w2, g.w2, sizeof merged.w2);
            memcpy(merged.b2, g.b2, sizeof merged.b2);
        }
        res->conflicting_pairs += (double)stats.conflicting_pairs;
        res->projections += (double)stats.projections;
        res->steps_with_conflict += stats.conflicting_pairs > 0;
        for (int i = 0; i < T * T; i++) res->cos[i / T][i % T] += cosine[i];

        /* SGD */
        for (int k = 0; k < H * D; k++) m.W1[k] -= LR * merged.W1[k];
        for (int k = 0; k < H; k++) m.b1[k] -= LR * merged.b1[k];
        for (int t = 0; t < T; t++) {
            for (int k = 0; k < H; k++) m.w2[t][k] -= LR * merged.w2[t][k];
            m.b2[t] -= LR * merged.b2[t][0];
        }
        for (int c = 0; c < NCHECK; c++)
            if (step + 1 == checkpoints[c]) test_loss(&m, res->curve[c]);
    }
    res->conflicting_pairs /= STEPS;
    res->projections /= STEPS;
    res->steps_with_conflict /= STEPS;
    for (int i = 0; i < T; i++)
        for (int j = 0; j < T; j++) res->cos[i][j] /= STEPS;
    test_loss(&m, res->loss);
    return 0;
}

int main(void) {
    size_t workspace_len = 0;
    pcgrad_status s = pcgrad_workspace_len_vars(T, S, &workspace_len);
    if (s != PCGRAD_OK) {
        fprintf(stderr, "pcgrad_workspace_len_vars: %s\n", pcgrad_status_str(s));
        return 1;
    }
    double *workspace = malloc(workspace_len * sizeof *workspace);
    if (workspace == NULL) return 1;

    make_data();
    net m0;
    double initial[T];
    init_net(&m0);
    test_loss(&m0, initial);

    printf("pcgrad %s: %d tasks, trunk %d-%d tanh, heads %d-1, %d parameters in %d tensors,\n", pcgrad_version(),
           T, D, H, H, H * D + H + T * (H + 1), S);
    printf("SGD lr %.2f, batch %d, %d steps, %d training / %d held-out samples, noise variance %.3f,\n",
           (double)LR, BATCH, STEPS, NTRAIN, NTEST, NOISE * NOISE);
    printf("workspace %zu doubles (pcgrad_workspace_len_vars)\n\n", workspace_len);
    printf("held-out MSE    task 0   task 1   task 2     mean | conflicts/step  projections/step  "
           "steps w/ conflict  mean cos(0,1) cos(0,2) cos(1,2)\n");
    printf("initial       %8.4f %8.4f %8.4f %8.4f |\n", initial[0], initial[1], initial[2],
           (initial[0] + initial[1] + initial[2]) / T);

    int bad = 0;
    result results[3];
    int ok[3] = {0, 0, 0};
    for (int meth = PLAIN; meth <= PPCGRAD; meth++) {
        result r;
        if (train((enum method)meth, workspace, workspace_len, &r) != 0) {
            bad = 1;
            continue;
        }
        results[meth] = r;
        ok[meth] = 1;
        char proj[32];
        if (meth == PLAIN)
            snprintf(proj, sizeof proj, "-"); /* measured, not applied */
        else
            snprintf(proj, sizeof proj, "%.3f", r.projections);
        printf("%-12s  %8.4f %8.4f %8.4f %8.4f | %14.3f  %16s  %16.1f%%  %13.3f %8.3f %8.3f\n",
               method_name[meth], r.loss[0], r.loss[1], r.loss[2], (r.loss[0] + r.loss[1] + r.loss[2]) / T,
               r.conflicting_pairs, proj, 100.0 * r.steps_with_conflict, r.cos[0][1], r.cos[0][2],
               r.cos[1][2]);
        for (int t = 0; t < T; t++) {
            if (!isfinite(r.loss[t]) || !(r.loss[t] < 0.5 * initial[t])) {
                fprintf(stderr, "%s: task %d diverged or did not learn: held-out MSE %g (initial %g)\n",
                        method_name[meth], t, r.loss[t], initial[t]);
                bad = 1;
            }
        }
    }
    printf("\nheld-out MSE, mean over tasks, during training:\n%-12s", "after step");
    for (int c = 0; c < NCHECK; c++) printf(" %8d", checkpoints[c]);
    printf(" %8d\n", STEPS);
    for (int meth = PLAIN; meth <= PPCGRAD; meth++) {
        if (!ok[meth]) continue;
        printf("%-12s", method_name[meth]);
        for (int c = 0; c < NCHECK; c++) {
            const double *l = results[meth].curve[c];
            printf(" %8.4f", (l[0] + l[1] + l[2]) / T);
        }
        const double *l = results[meth].loss;
        printf(" %8.4f\n", (l[0] + l[1] + l[2]) / T);
    }
    free(workspace);
    if (bad) {
        fprintf(stderr, "train: FAILED\n");
        return 1;
    }
    printf("\ntrain: every task learned with every method (held-out MSE below half its initial value)\n");
    return 0;
}
