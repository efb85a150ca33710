/* Multi-task training with the parameters sharded across MPI ranks, PCGrad
 * over the shards (pcgrad_mpi.c), SGD on each rank's shard.
 *
 * The model: a shared tanh trunk (H x D weights and H biases) and one linear
 * head per task (H weights and a bias), P = H D + H + T (H + 1) parameters in
 * one flat vector, cut into contiguous shards in rank order. Three
 * regression tasks whose targets pull the trunk in partly opposite
 * directions (as c_examples/train.c). Per step, on every rank:
 *   1. MPI_Allgatherv of the parameter shards (FSDP style) into the whole
 *      vector, the forward pass and the per-task losses on the batch;
 *   2. backpropagation for this rank's parameters only: its shard of every
 *      task's gradient (T x n_local, a head only for its own task: has_grad);
 *   3. pcgrad_mpi_merge_flat (sequential, a fresh random order per step from
 *      a PRNG seeded alike on every rank): partial Gram, combination,
 *      coefficients, merged gradient of the shard;
 *   4. SGD on the shard.
 * It prints the held-out per-task losses every 40 steps, with %.17g.
 *
 *   train_mpi --reference                the same training in one process,
 *                                        with pcgrad_merge_flat on the whole
 *                                        gradient (no pcgrad_mpi code)
 *   mpirun -np R train_mpi [--strategy allreduce|deterministic]
 *                          [--cuts aligned|arbitrary] [--check FILE]
 * --cuts aligned (default) puts the shard boundaries at multiples of
 * PCGRAD_GRAM_CHUNK; arbitrary cuts them unevenly anywhere. --check FILE
 * compares the printed losses with the reference output FILE: bitwise for the
 * deterministic strategy on aligned cuts, else within 1e-6 relative; exit
 * status 1 when they differ, or when a task does not learn. */
#include "pcgrad_mpi.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { D = 48, H = 512, T = 3, NTRAIN = 1024, NTEST = 512, BATCH = 32, STEPS = 200, EVERY = 40 };
enum { P = H * D + H + T * (H + 1), S = 2 + T };
#define LR 0.05f

static uint64_t next_u64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double gauss(uint64_t *s) {
    double u = (double)((next_u64(s) >> 11) + 1) * (1.0 / 9007199254740992.0);
    double v = (double)(next_u64(s) >> 11) * (1.0 / 9007199254740992.0);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* ---- data and model (the same on every rank) ---------------------------- */

static float xtr[NTRAIN][D], ytr[NTRAIN][T], xte[NTEST][D], yte[NTEST][T];

static void make_data(void) {
    uint64_t s = 20240601u;
    double u[T][D], a[D], b[D], c[D];
    for (int i = 0; i < D; i++) a[i] = gauss(&s) / sqrt((double)D), b[i] = gauss(&s) / sqrt((double)D),
                                c[i] = gauss(&s) / sqrt((double)D);
    for (int i = 0; i < D; i++) {
        u[0][i] = (a[i] + b[i]) / sqrt(2.0);
        u[1][i] = (a[i] - b[i]) / sqrt(2.0);
        u[2][i] = (c[i] - a[i]) / sqrt(2.0);
    }
    for (int n = 0; n < NTRAIN + NTEST; n++) {
        float *x = n < NTRAIN ? xtr[n] : xte[n - NTRAIN], *y = n < NTRAIN ? ytr[n] : yte[n - NTRAIN];
        for (int i = 0; i < D; i++) x[i] = (float)gauss(&s);
        for (int t = 0; t < T; t++) {
            double v = 0.0;
            for (int i = 0; i < D; i++) v += u[t][i] * x[i];
            y[t] = (float)(v + 0.1 * gauss(&s));
        }
    }
}

/* Offsets in the flat parameter vector. */
#define W1 0
#define B1 (H * D)
#define HEAD(t) (H * D + H + (t) * (H + 1)) /* w2[t][0..H), then b2[t] */

static const size_t segments[S] = {H * D, H, H + 1, H + 1, H + 1};
static uint8_t has_grad[T * S]; /* task t: trunk and its own head */

static void init_params(float *theta) {
    uint64_t s = 7u;
    for (int k = 0; k < H * D; k++) theta[W1 + k] = (float)(gauss(&s) / sqrt((double)D));
    for (int k = 0; k < H; k++) theta[B1 + k] = 0.0f;
    for (int t = 0; t < T; t++) {
        for (int k = 0; k < H; k++) theta[HEAD(t) + k] = (float)(gauss(&s) / sqrt((double)H));
        theta[HEAD(t) + H] = 0.0f;
    }
}

static void hidden(const float *theta, const float *x, float *h) {
    for (int j = 0; j < H; j++) {
        float z = theta[B1 + j];
        for (int i = 0; i < D; i++) z += theta[W1 + j * D + i] * x[i];
        h[j] = tanhf(z);
    }
}

static float head(const float *theta, int t, const float *h) {
    float y = theta[HEAD(t) + H];
    for (int j = 0; j < H; j++) y += theta[HEAD(t) + j] * h[j];
    return y;
}

static void test_loss(const float *theta, double loss[T]) {
    static float h[H];
    for (int t = 0; t < T; t++) loss[t] = 0.0;
    for (int n = 0; n < NTEST; n++) {
        hidden(theta, xte[n], h);
        for (int t = 0; t < T; t++) {
            double e = (double)head(theta, t, h) - yte[n][t];
            loss[t] += e * e;
        }
    }
    for (int t = 0; t < T; t++) loss[t] /= NTEST;
}

/* Every task's gradient of its batch loss (mean of squared errors / 2) for
 * the parameters lo..hi only, into g (T rows of hi - lo floats): the
 * forward pass is whole, the weight gradients are formed for the shard. */
static float hb[BATCH][H], dy[T][BATCH], dz[T][BATCH][H];
static void backward(const float *theta, const int *batch, size_t lo, size_t hi, float *g) {
    size_t n = hi - lo;
    for (int b = 0; b < BATCH; b++) {
        hidden(theta, xtr[batch[b]], hb[b]);
        for (int t = 0; t < T; t++) {
            dy[t][b] = (head(theta, t, hb[b]) - ytr[batch[b]][t]) / BATCH;
            for (int j = 0; j < H; j++) dz[t][b][j] = dy[t][b] * theta[HEAD(t) + j] * (1.0f - hb[b][j] * hb[b][j]);
        }
    }
    for (int t = 0; t < T; t++)
        for (size_t k = lo; k < hi; k++) {
            float s = 0.0f;
            if (k < B1) {
                size_t j = k / D, i = k % D;
                for (int b = 0; b < BATCH; b++) s += dz[t][b][j] * xtr[batch[b]][i];
            } else if (k < HEAD(0)) {
                for (int b = 0; b < BATCH; b++) s += dz[t][b][k - B1];
            } else if ((k - HEAD(0)) / (H + 1) == (size_t)t) {
                size_t j = (k - HEAD(0)) % (H + 1);
                for (int b = 0; b < BATCH; b++) s += j < H ? dy[t][b] * hb[b][j] : dy[t][b];
            } /* another task's head: no gradient (has_grad 0) */
            g[t * n + (k - lo)] = s;
        }
}

/* The shard's segments (the global ones cut at lo..hi) and has_grad. */
static size_t local_layout(size_t lo, size_t hi, size_t *segs, uint8_t *has) {
    size_t ns = 0, a = 0, idx[S];
    for (size_t s = 0; s < S; s++) {
        size_t b = a + segments[s], x = a > lo ? a : lo, y = b < hi ? b : hi;
        if (y > x) idx[ns] = s, segs[ns++] = y - x;
        a = b;
    }
    for (size_t t = 0; t < T; t++)
        for (size_t s = 0; s < ns; s++) has[t * ns + s] = has_grad[t * S + idx[s]];
    return ns;
}

/* ---- training ---------------------------------------------------------------- */

static float theta[P], grads[T * P], merged[P];
enum { NREC = STEPS / EVERY + 1 };
static double losses[NREC][T];

int main(int argc, char **argv) {
    int reference = 0, strategy = PCGRAD_MPI_DETERMINISTIC, aligned = 1;
    const char *check = NULL;
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--reference"))
            reference = 1;
        else if (!strcmp(argv[a], "--strategy") && a + 1 < argc)
            strategy = !strcmp(argv[++a], "allreduce") ? PCGRAD_MPI_ALLREDUCE : PCGRAD_MPI_DETERMINISTIC;
        else if (!strcmp(argv[a], "--cuts") && a + 1 < argc)
            aligned = strcmp(argv[++a], "arbitrary") != 0;
        else if (!strcmp(argv[a], "--check") && a + 1 < argc)
            check = argv[++a];
        else {
            fprintf(stderr, "usage: train_mpi [--reference] [--strategy allreduce|deterministic] "
                            "[--cuts aligned|arbitrary] [--check FILE]\n");
            return 2;
        }
    }
    int rank = 0, ranks = 1;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    if (reference && ranks != 1) {
        if (rank == 0) fprintf(stderr, "train_mpi: --reference runs in one process\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    for (int t = 0; t < T; t++)
        for (int s = 0; s < S; s++) has_grad[t * S + s] = s < 2 || s == 2 + t;

    /* Shard boundaries, the same on every rank. */
    int *counts = malloc((size_t)ranks * sizeof *counts), *displs = malloc((size_t)ranks * sizeof *displs);
    if (!counts || !displs) MPI_Abort(MPI_COMM_WORLD, 2);
    size_t chunks = (P + PCGRAD_GRAM_CHUNK - 1) / PCGRAD_GRAM_CHUNK;
    for (int r = 0; r <= ranks; r++) {
        size_t cut;
        if (aligned) /* chunk multiples, uneven */
            cut = (chunks * (size_t)(r * (r + 3)) + (size_t)(ranks * (ranks + 3)) - 1) /
                  (size_t)(ranks * (ranks + 3)) * PCGRAD_GRAM_CHUNK;
        else
            cut = (size_t)P * (size_t)(r * (r + 2)) / (size_t)(ranks * (ranks + 2)) + (r > 0 && r < ranks ? 37 : 0);
        if (cut > P || r == ranks) cut = P;
        if (r < ranks) displs[r] = (int)cut;
        if (r > 0) counts[r - 1] = (int)cut - displs[r - 1];
    }
    size_t lo = reference ? 0 : (size_t)displs[rank], n = reference ? P : (size_t)counts[rank];

    size_t lsegs[S];
    uint8_t lhas[T * S];
    size_t ns = local_layout(lo, lo + n, lsegs, lhas);

    size_t ws_len = 0;
    if (reference) {
        if (pcgrad_workspace_len(T, &ws_len) != PCGRAD_OK) MPI_Abort(MPI_COMM_WORLD, 2);
    } else if (pcgrad_mpi_workspace_len(T, P, ranks, &ws_len) != PCGRAD_OK)
        MPI_Abort(MPI_COMM_WORLD, 2);
    double *ws = malloc(ws_len * sizeof *ws);
    if (!ws) MPI_Abort(MPI_COMM_WORLD, 2);

    make_data();
    init_params(theta); /* every rank: the whole vector; each updates its shard */
    pcgrad_rng order = {12345u};
    pcgrad_config cfg = {0};
    cfg.order = PCGRAD_ORDER_SHUFFLED;
    cfg.rng = &order;
    cfg.check_finite = 1;
    cfg.threads = 1;
    uint64_t data = 99u;
    int batch[BATCH];
    pcgrad_mpi_traffic traffic = {0, 0, 0};
    int status = 0;
    pcgrad_stats stats;
    double conflicts = 0.0, projections = 0.0;
    test_loss(theta, losses[0]);
    for (int step = 0; step < STEPS; step++) {
        for (int b = 0; b < BATCH; b++) batch[b] = (int)(next_u64(&data) % NTRAIN);
        if (!reference) /* gather the shards (each rank's part is in place) */
            MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, theta, counts, displs, MPI_FLOAT, MPI_COMM_WORLD);
        backward(theta, batch, lo, lo + n, grads);
        pcgrad_status s;
        float dummy = 0.0f;
        if (reference)
            s = pcgrad_merge_flat(&cfg, grads, T * P, segments, S, has_grad, T * S, T, P, merged, P, &stats, NULL,
                                  0, ws, ws_len);
        else
            s = pcgrad_mpi_merge_flat(MPI_COMM_WORLD, strategy, &cfg, n ? grads : &dummy, T * n, lsegs, ns, lhas,
                                      T * ns, T, lo, n, n ? merged : &dummy, n, &stats, &traffic, ws, ws_len);
        if (s != PCGRAD_OK) {
            fprintf(stderr, "rank %d, step %d: %s\n", rank, step, pcgrad_status_str(s));
            status = 1; /* every rank got the same status: all stop together */
            break;
        }
        conflicts += (double)stats.conflicting_pairs;
        projections += (double)stats.projections;
        for (size_t k = 0; k < n; k++) theta[lo + k] -= LR * merged[k];
        if ((step + 1) % EVERY == 0) {
            if (!reference)
                MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, theta, counts, displs, MPI_FLOAT, MPI_COMM_WORLD);
            test_loss(theta, losses[(step + 1) / EVERY]);
        }
    }

    if (rank == 0 && status == 0) {
        if (reference)
            printf("# one process, pcgrad_merge_flat, P = %d parameters, T = %d\n", P, T);
        else
            printf("# %d rank%s, %s strategy, %s cuts, P = %d parameters, T = %d, rank 0 holds %zu\n", ranks,
                   ranks > 1 ? "s" : "", strategy ? "deterministic" : "allreduce", aligned ? "chunk-aligned" : "arbitrary",
                   P, T, n);
        printf("# per step: %.2f conflicting pairs of %d, %.2f projections\n", conflicts / STEPS, T * (T - 1) / 2,
               projections / STEPS);
        for (int c = 0; c < NREC; c++)
            printf("step %4d loss %.17g %.17g %.17g\n", c * EVERY, losses[c][0], losses[c][1], losses[c][2]);
        if (!reference)
            printf("# bytes per step and rank handed to MPI: Gram combination %zu sent / %zu received "
                   "(T(T+1)/2 = %d doubles per partial), status agreement %zu; parameter all-gather %zu; "
                   "for comparison an all-reduce of the T task gradients: %zu, of one merged gradient: %zu\n",
                   traffic.combine_bytes, traffic.receive_bytes, T * (T + 1) / 2, traffic.agree_bytes,
                   (size_t)P * sizeof(float), (size_t)T * P * sizeof(float), (size_t)P * sizeof(float));
        for (int t = 0; t < T; t++)
            if (!(losses[NREC - 1][t] < 0.5 * losses[0][t])) {
                fprintf(stderr, "train_mpi: task %d did not learn: %g -> %g\n", t, losses[0][t], losses[NREC - 1][t]);
                status = 1;
            }
    }
    if (rank == 0 && status == 0 && check) {
        FILE *f = fopen(check, "r");
        char line[512];
        int c = 0, exact = 1;
        double worst = 0.0;
        if (!f) {
            fprintf(stderr, "train_mpi: cannot read %s\n", check);
            status = 1;
        }
        while (f && fgets(line, sizeof line, f)) {
            int st;
            double l[T];
            if (sscanf(line, "step %d loss %lf %lf %lf", &st, &l[0], &l[1], &l[2]) != 4) continue;
            if (c >= NREC || st != c * EVERY) {
                status = 1;
                break;
            }
            for (int t = 0; t < T; t++) {
                double rel = fabs(l[t] - losses[c][t]) / fabs(l[t]);
                exact &= l[t] == losses[c][t];
                if (!(rel <= worst)) worst = rel;
            }
            c++;
        }
        if (f) fclose(f);
        int promised = strategy == PCGRAD_MPI_DETERMINISTIC && aligned;
        if (c != NREC || !(worst <= 1e-6) || (promised && !exact)) status = 1;
        printf("check against one process (%d checkpoints): %s, largest relative difference %.3g (%s) -> %s\n", c,
               exact ? "bitwise equal" : "not bitwise equal", worst, promised ? "bitwise promised" : "1e-6 promised",
               status ? "FAILED" : "ok");
    }
    MPI_Bcast(&status, 1, MPI_INT, 0, MPI_COMM_WORLD);
    free(ws);
    free(counts);
    free(displs);
    MPI_Finalize();
    return status;
}
