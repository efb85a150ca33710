/* Tests of sharded PCGrad over MPI (pcgrad_mpi.c) against one process.
 *
 * Every rank generates the same full T x N gradients (same seed), runs the
 * one-process reference (pcgrad_merge_flat / pcgrad_project_flat) on all of
 * them, and compares its own shard of the sharded result with the same
 * columns of the reference:
 *  - deterministic strategy, every shard boundary a multiple of
 *    PCGRAD_GRAM_CHUNK: bitwise equal (memcmp), stats and PRNG state equal;
 *  - otherwise: |sharded - reference| <= 1e-6 * max |input|.
 * For both modes (sequential fixed, sequential shuffled over three steps
 * with the same seed on every rank, simultaneous), both strategies, merged
 * and in-place projected output, gradients from random to degenerate
 * (mixed magnitudes, identical, opposite, zero, 1e-30, 1e30), T = 1, 3, 5, dense and with
 * segments and has_grad, and three partitions (chunk-aligned uneven,
 * chunk-aligned with an empty rank, arbitrary cuts). The deterministic
 * strategy is also run twice on the arbitrary partition: bitwise the same.
 * Then bad input on one rank (wrong length, NaN or infinity with
 * check_finite, a gap in the partition, another PRNG seed, another
 * strategy, a small workspace, a NULL output) must give every rank the
 * same error with no buffer written, and the next good call must succeed.
 *
 * Rank 0 prints one summary line per category; exit status 1 on any
 * failure (on every rank). */
#include "pcgrad_mpi.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define C PCGRAD_GRAM_CHUNK
enum { NCOL = 10 * C + 77 }; /* eleven chunks, the last one partial */
enum { MAXT = 5, STEPS = 3 };

static int rank, ranks;
static long failures;

#define FAIL(...)                                                                                            \
    do {                                                                                                     \
        fprintf(stderr, "rank %d: ", rank);                                                                 \
        fprintf(stderr, __VA_ARGS__);                                                                        \
        fputc('\n', stderr);                                                                                 \
        failures++;                                                                                          \
    } while (0)

/* ---- data --------------------------------------------------------------- */

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

enum kind { GAUSS, MIXED, IDENTICAL, OPPOSITE, ZERO_ROW, TINY, HUGE_, NKIND };
static const char *const kind_name[] = {"gauss",    "mixed scales", "identical", "opposite",
                                        "zero row", "1e-30",        "1e30"};

static void make(enum kind k, size_t t, size_t n, uint64_t seed, float *g) {
    uint64_t s = seed;
    for (size_t i = 0; i < t * n; i++) g[i] = (float)gauss(&s);
    /* correlated rows, so that some pairs conflict and some do not */
    for (size_t r = 1; r < t; r++)
        for (size_t c = 0; c < n; c++) g[r * n + c] += (r % 2 ? -0.5f : 0.4f) * g[c];
    if (k == IDENTICAL)
        for (size_t r = 1; r < t; r++) memcpy(g + r * n, g, n * sizeof *g);
    if (k == OPPOSITE && t > 1)
        for (size_t c = 0; c < n; c++) g[n + c] = -g[c];
    /* magnitudes from 1e-3 to 1e3 in runs of 1000 columns: the partial Grams
     * of different chunks differ in exponent, so their f64 sum rounds and
     * depends on the order of addition */
    if (k == MIXED)
        for (size_t r = 0; r < t; r++)
            for (size_t c = 0; c < n; c++) g[r * n + c] *= (float)pow(10.0, (double)((c / 1000) % 7) - 3.0);
    if (k == ZERO_ROW) memset(g + (t - 1) * n, 0, n * sizeof *g);
    if (k == TINY || k == HUGE_)
        for (size_t i = 0; i < t * n; i++) g[i] *= k == TINY ? 1e-30f : 1e30f;
}

/* ---- partitions ----------------------------------------------------------- */

enum part { ALIGNED, ALIGNED_EMPTY, ARBITRARY, NPART };
static const char *const part_name[] = {"chunk-aligned", "chunk-aligned, rank 1 empty", "arbitrary"};

/* Cut points cut[0] = 0 <= ... <= cut[ranks] = n, the same on every rank. */
static void partition(enum part p, size_t n, size_t *cut) {
    static const unsigned w[] = {3, 1, 4, 2, 5, 1, 3};
    size_t chunks = (n + C - 1) / C, sum = 0, acc = 0;
    for (int r = 0; r < ranks; r++) sum += (p == ALIGNED_EMPTY && r == 1) ? 0 : w[r % 7];
    cut[0] = 0;
    if (p == ARBITRARY) {
        uint64_t s = 4242;
        for (int r = 1; r < ranks; r++) cut[r] = (size_t)(next_u64(&s) % (n + 1));
        for (int r = 1; r < ranks; r++) /* sort */
            for (int q = r; q > 1 && cut[q - 1] > cut[q]; q--) {
                size_t x = cut[q];
                cut[q] = cut[q - 1];
                cut[q - 1] = x;
            }
    } else {
        for (int r = 1; r < ranks; r++) {
            acc += (p == ALIGNED_EMPTY && r - 1 == 1) ? 0 : w[(r - 1) % 7];
            size_t k = chunks * acc / sum;
            cut[r] = k * C < n ? k * C : n;
        }
    }
    cut[ranks] = n;
}

/* ---- one case --------------------------------------------------------------- */

typedef struct {
    long bitwise, bitwise_ok, tol, tol_ok, tol_exact;
    double worst; /* largest |diff| / max |input| among tolerance cases */
} tally;
static tally tallies[NPART][2], gtallies[NPART][2];
static long naive_cases, naive_equal; /* per-rank partials added in rank order */

static float full[MAXT * NCOL], work[MAXT * NCOL], ref_proj[MAXT * NCOL];
static float ref_merged[NCOL], shard_in[MAXT * NCOL], shard_merged[NCOL], again[MAXT * NCOL];
static double ref_ws[4096], *ws;
static float *cache[NKIND][MAXT + 1]; /* the generated data sets */
static size_t ws_len;

/* The global segments of the layout case, and has_grad (T x S). */
static const size_t gsegs[] = {3 * C + 5, 123, 2 * C, C - 128, NCOL - (3 * C + 5) - 123 - 2 * C - (C - 128)};
enum { GS = sizeof gsegs / sizeof gsegs[0] };

/* The shard's segments: the global ones cut at [lo, hi); has_grad rows to match. */
static size_t local_segments(size_t t, size_t lo, size_t hi, const uint8_t *ghas, size_t *segs, uint8_t *has) {
    size_t ns = 0, a = 0;
    size_t idx[GS];
    for (size_t s = 0; s < GS; s++) {
        size_t b = a + gsegs[s], x = a > lo ? a : lo, y = b < hi ? b : hi;
        if (y > x) {
            idx[ns] = s;
            segs[ns++] = y - x;
        }
        a = b;
    }
    for (size_t r = 0; r < t; r++)
        for (size_t s = 0; s < ns; s++) has[r * ns + s] = ghas[r * GS + idx[s]];
    return ns;
}

static double maxabs(const float *x, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fabs((double)x[i]) > m ? fabs((double)x[i]) : m;
    return m;
}

/* Compares n floats, bitwise or within the tolerance; updates the tally. */
static void compare(tally *ty, int bitwise, const float *got, const float *want, size_t n, double scale,
                    const char *what) {
    if (bitwise) {
        ty->bitwise++;
        if (memcmp(got, want, n * sizeof *got) == 0)
            ty->bitwise_ok++;
        else {
            size_t i = 0;
            while (got[i] == want[i] || (isnan(got[i]) && isnan(want[i]))) i++;
            FAIL("%s: not bitwise equal at %zu: %.9g vs %.9g", what, i, (double)got[i], (double)want[i]);
        }
        return;
    }
    ty->tol++;
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (!(d <= worst)) worst = d; /* NaN counts as worst */
    }
    double rel = scale > 0.0 ? worst / scale : worst;
    if (!(rel <= 1e-6)) {
        FAIL("%s: difference %.3g of max |input| %.3g", what, rel, scale);
        return;
    }
    ty->tol_ok++;
    ty->tol_exact += memcmp(got, want, n * sizeof *got) == 0;
    if (rel > ty->worst) ty->worst = rel;
}

static void compare_gram(tally *ty, int bitwise, const double *got, const double *want, size_t tt,
                         const char *what) {
    double scale = 0.0, worst = 0.0;
    for (size_t i = 0; i < tt; i++) scale = fabs(want[i]) > scale ? fabs(want[i]) : scale;
    int same = memcmp(got, want, tt * sizeof *got) == 0;
    if (bitwise) {
        ty->bitwise++;
        if (same)
            ty->bitwise_ok++;
        else
            FAIL("%s: Gram not bitwise equal", what);
        return;
    }
    ty->tol++;
    for (size_t i = 0; i < tt; i++) {
        double d = fabs(got[i] - want[i]);
        if (!(d <= worst)) worst = d;
    }
    double rel = scale > 0.0 ? worst / scale : worst;
    if (!(rel <= 1e-6)) {
        FAIL("%s: Gram difference %.3g of its largest entry", what, rel);
        return;
    }
    ty->tol_ok++;
    ty->tol_exact += same;
    if (rel > ty->worst) ty->worst = rel;
}

static void run_case(enum kind k, size_t t, enum part p, int layout, pcgrad_config cfg, int strategy,
                     int project) {
    size_t n = NCOL, cut[64];
    /* each data set is generated once (the generator dominates otherwise) */
    if (cache[k][t] == NULL) {
        cache[k][t] = malloc(t * n * sizeof *full);
        if (cache[k][t] == NULL) MPI_Abort(MPI_COMM_WORLD, 2);
        make(k, t, n, 1000 + 17 * (uint64_t)k + t, cache[k][t]);
    }
    memcpy(full, cache[k][t], t * n * sizeof *full);
    partition(p, n, cut);
    size_t lo = cut[rank], hi = cut[rank + 1], dim = hi - lo;
    int aligned = 1;
    for (int r = 1; r < ranks; r++) aligned &= cut[r] % C == 0 || cut[r] == n;
    int bitwise = strategy == PCGRAD_MPI_DETERMINISTIC && aligned;
    tally *ty = &tallies[p][strategy];

    uint8_t ghas[MAXT * GS], has[MAXT * GS];
    size_t segs[GS], ns = 0;
    for (size_t r = 0; r < t; r++)
        for (size_t s = 0; s < GS; s++) ghas[r * GS + s] = (uint8_t)(t == 1 || (r + s) % 3 != 0);
    if (layout) ns = local_segments(t, lo, hi, ghas, segs, has);
    const size_t *gs = layout ? gsegs : NULL, *ls = layout ? segs : NULL;
    const uint8_t *gh = layout ? ghas : NULL, *lh = layout ? has : NULL;
    size_t gsl = layout ? GS : 0, ghl = layout ? t * GS : 0, lsl = layout ? ns : 0, lhl = layout ? t * ns : 0;

    pcgrad_rng rng_ref = {777}, rng_sh = {777};
    pcgrad_config cref = cfg, csh = cfg;
    cref.rng = &rng_ref;
    csh.rng = &rng_sh;
    double scale = maxabs(full, t * n);
    char what[200];
    snprintf(what, sizeof what, "%s T=%zu %s%s mode %u order %u %s %s", kind_name[k], t, part_name[p],
             layout ? " segments" : "", cfg.mode, cfg.order, strategy ? "deterministic" : "allreduce",
             project ? "project" : "merge");

    /* the Gram itself: sharded against pcgrad_gram_flat over all columns */
    if (!project && cfg.mode == PCGRAD_MODE_SEQUENTIAL && cfg.order == PCGRAD_ORDER_FIXED) {
        double gref[2 * MAXT * MAXT] = {0}, gsh[MAXT * MAXT], naive[MAXT * MAXT] = {0}, part[2 * MAXT * MAXT];
        pcgrad_status s = pcgrad_gram_flat(full, t * n, gs, gsl, gh, ghl, t, n, 0, n, gref, 2 * t * t);
        for (size_t r = 0; r < t; r++) memcpy(shard_in + r * dim, full + r * n + lo, dim * sizeof *full);
        float dummy = 0.0f;
        pcgrad_status s2 = pcgrad_mpi_gram_flat(MPI_COMM_WORLD, strategy, dim ? shard_in : &dummy, t * dim, ls, lsl,
                                                lh, lhl, t, lo, dim, gsh, t * t, NULL, ws, ws_len);
        if (s != PCGRAD_OK || s2 != PCGRAD_OK)
            FAIL("%s: Gram: %s / %s", what, pcgrad_status_str(s), pcgrad_status_str(s2));
        else
            compare_gram(&gtallies[p][strategy], bitwise, gsh, gref, t * t, what);
        /* what adding one partial per rank in rank order would give */
        if (strategy == PCGRAD_MPI_DETERMINISTIC && aligned && rank == 0 && ranks > 1) {
            for (int r = 0; r < ranks; r++) {
                memset(part, 0, sizeof part);
                pcgrad_gram_flat(full, t * n, gs, gsl, gh, ghl, t, n, cut[r], cut[r + 1], part, 2 * t * t);
                pcgrad_gram_combine(part, t * t, t, naive, t * t);
            }
            naive_cases++;
            naive_equal += memcmp(naive, gref, t * t * sizeof *naive) == 0;
        }
    }

    memcpy(work, full, t * n * sizeof *work);
    for (int step = 0; step < (cfg.order == PCGRAD_ORDER_SHUFFLED ? STEPS : 1); step++) {
        pcgrad_stats sref, ssh;
        pcgrad_status s;
        /* reference: one process, all columns (projecting in place step by step) */
        if (project)
            s = pcgrad_project_flat(&cref, work, t * n, gs, gsl, gh, ghl, t, n, ref_merged, n, &sref, NULL, 0,
                                    ref_ws, sizeof ref_ws / sizeof *ref_ws);
        else
            s = pcgrad_merge_flat(&cref, work, t * n, gs, gsl, gh, ghl, t, n, ref_merged, n, &sref, NULL, 0,
                                  ref_ws, sizeof ref_ws / sizeof *ref_ws);
        if (s != PCGRAD_OK) {
            FAIL("%s: reference: %s", what, pcgrad_status_str(s));
            return;
        }
        if (project) memcpy(ref_proj, work, t * n * sizeof *work);
        /* sharded: this rank's columns only (the input of this step: the
         * reference's input before the call, i.e. the previous step's output) */
        if (step == 0)
            for (size_t r = 0; r < t; r++) memcpy(shard_in + r * dim, full + r * n + lo, dim * sizeof *full);
        float dummy = 0.0f;
        float *gbuf = dim ? shard_in : &dummy, *mbuf = dim ? shard_merged : &dummy;
        if (project)
            s = pcgrad_mpi_project_flat(MPI_COMM_WORLD, strategy, &csh, gbuf, t * dim, ls, lsl, lh, lhl, t, lo,
                                        dim, mbuf, dim, &ssh, NULL, ws, ws_len);
        else
            s = pcgrad_mpi_merge_flat(MPI_COMM_WORLD, strategy, &csh, gbuf, t * dim, ls, lsl, lh, lhl, t, lo,
                                      dim, mbuf, dim, &ssh, NULL, ws, ws_len);
        if (s != PCGRAD_OK) {
            FAIL("%s: sharded: %s", what, pcgrad_status_str(s));
            return;
        }
        compare(ty, bitwise, shard_merged, ref_merged + lo, dim, scale, what);
        if (project)
            for (size_t r = 0; r < t; r++)
                compare(ty, bitwise, shard_in + r * dim, ref_proj + r * n + lo, dim, scale, what);
        if (rng_sh.state != rng_ref.state) FAIL("%s: PRNG state differs", what);
        if (bitwise && (ssh.conflicting_pairs != sref.conflicting_pairs || ssh.projections != sref.projections))
            FAIL("%s: stats differ", what);
    }
    /* deterministic: the same partition twice gives the same bits */
    if (strategy == PCGRAD_MPI_DETERMINISTIC && p == ARBITRARY && !project) {
        float *mbuf = dim ? again : &(float){0};
        pcgrad_rng r2 = {777};
        pcgrad_config c2 = cfg;
        c2.rng = &r2;
        for (size_t r = 0; r < t; r++) memcpy(shard_in + r * dim, full + r * n + lo, dim * sizeof *full);
        const float *gbuf = dim ? shard_in : &(float){0};
        for (int rep = 0; rep < 2; rep++) {
            pcgrad_status s = pcgrad_mpi_merge_flat(MPI_COMM_WORLD, strategy, &c2, gbuf, t * dim, ls, lsl, lh,
                                                    lhl, t, lo, dim, rep ? mbuf : (dim ? shard_merged : mbuf),
                                                    dim, NULL, NULL, ws, ws_len);
            if (s != PCGRAD_OK) FAIL("%s: repeat: %s", what, pcgrad_status_str(s));
            r2.state = 777;
        }
        tally *rt = &tallies[p][strategy];
        rt->bitwise++;
        if (memcmp(again, shard_merged, dim * sizeof *again) == 0)
            rt->bitwise_ok++;
        else
            FAIL("%s: deterministic strategy not reproducible", what);
    }
}

/* ---- errors ------------------------------------------------------------------ */

enum bad { WRONG_LEN, NAN_IN, INF_IN, GAP, OTHER_SEED, OTHER_STRATEGY, SMALL_WS, NULL_OUT, NBAD };
static const char *const bad_name[] = {"wrong length",   "NaN, check_finite",  "infinity, check_finite",
                                       "partition gap",  "other PRNG seed",    "other strategy",
                                       "small workspace", "NULL merged output"};
static const pcgrad_status bad_status[] = {
    PCGRAD_ERROR_LENGTH_MISMATCH, PCGRAD_ERROR_NON_FINITE,   PCGRAD_ERROR_NON_FINITE,
    PCGRAD_ERROR_INVALID_RANGE,   PCGRAD_ERROR_INVALID_ORDER, PCGRAD_ERROR_INVALID_ENUM,
    PCGRAD_ERROR_WORKSPACE_TOO_SMALL, PCGRAD_ERROR_NULL_POINTER};
static long err_checks, err_ok;

static void run_error(enum bad b, int strategy, int project) {
    const size_t t = 3, n = NCOL;
    size_t cut[64];
    make(GAUSS, t, n, 55, full);
    partition(ALIGNED, n, cut);
    int culprit = ranks - 1 - (int)b % ranks; /* a different rank for different faults */
    if (b == OTHER_SEED || b == OTHER_STRATEGY) culprit = ranks > 1 ? 1 : -1; /* needs another rank */
    if (b == GAP) culprit = 0;
    size_t lo = cut[rank], dim = cut[rank + 1] - lo;
    int me = rank == culprit;
    for (size_t r = 0; r < t; r++) memcpy(shard_in + r * dim, full + r * n + lo, dim * sizeof *full);
    if (me && (b == NAN_IN || b == INF_IN) && dim > 0) shard_in[dim / 2] = b == NAN_IN ? NAN : INFINITY;
    pcgrad_rng rng = {31337};
    if (me && b == OTHER_SEED) rng.state = 31338;
    pcgrad_config cfg = {0};
    cfg.order = PCGRAD_ORDER_SHUFFLED;
    cfg.rng = &rng;
    cfg.check_finite = 1;
    cfg.threads = 1;
    int strat = me && b == OTHER_STRATEGY ? 1 - strategy : strategy;
    size_t glen = t * dim - (me && b == WRONG_LEN ? 1 : 0);
    size_t off = lo + (me && b == GAP ? 1 : 0);
    size_t wl = me && b == SMALL_WS ? ws_len / 4 : ws_len;
    for (size_t i = 0; i < n; i++) shard_merged[i] = -7.0f; /* sentinel */
    memcpy(again, shard_in, t * dim * sizeof *again);
    float dummy = 0.0f;
    float *gbuf = dim ? shard_in : &dummy, *mbuf = me && b == NULL_OUT ? NULL : (dim ? shard_merged : &dummy);
    pcgrad_status want = culprit < 0 ? PCGRAD_OK : bad_status[b];
    if (b == SMALL_WS && strategy == PCGRAD_MPI_ALLREDUCE && me) wl = 8; /* allreduce needs little */
    pcgrad_status s = project ? pcgrad_mpi_project_flat(MPI_COMM_WORLD, strat, &cfg, gbuf, glen, NULL, 0, NULL, 0,
                                                        t, off, dim, mbuf, mbuf ? dim : 0, NULL, NULL, ws, wl)
                              : pcgrad_mpi_merge_flat(MPI_COMM_WORLD, strat, &cfg, gbuf, glen, NULL, 0, NULL, 0,
                                                      t, off, dim, mbuf, mbuf ? dim : 0, NULL, NULL, ws, wl);
    if (project && b == NULL_OUT) want = PCGRAD_OK; /* merged is optional when projecting */
    err_checks++;
    int good = s == want;
    if (!good)
        FAIL("error case '%s' (%s, %s): got %s, want %s", bad_name[b], strategy ? "deterministic" : "allreduce",
             project ? "project" : "merge", pcgrad_status_str(s), pcgrad_status_str(want));
    if (want != PCGRAD_OK) {
        int untouched = rng.state == (me && b == OTHER_SEED ? 31338u : 31337u);
        for (size_t i = 0; i < n; i++) untouched &= shard_merged[i] == -7.0f;
        untouched &= memcmp(again, shard_in, t * dim * sizeof *again) == 0; /* bytes: NaN included */
        if (!untouched) {
            FAIL("error case '%s': a buffer or the PRNG changed", bad_name[b]);
            good = 0;
        }
    }
    /* the next good call on every rank must succeed (nothing left in flight) */
    for (size_t r = 0; r < t; r++) memcpy(shard_in + r * dim, full + r * n + lo, dim * sizeof *full);
    rng.state = 31337;
    s = pcgrad_mpi_merge_flat(MPI_COMM_WORLD, strategy, &cfg, gbuf, t * dim, NULL, 0, NULL, 0, t, lo, dim,
                              dim ? shard_merged : &dummy, dim, NULL, NULL, ws, ws_len);
    if (s != PCGRAD_OK) {
        FAIL("after error case '%s': good call: %s", bad_name[b], pcgrad_status_str(s));
        good = 0;
    }
    err_ok += good;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    if (ranks > 63) {
        if (rank == 0) fprintf(stderr, "shard_test: at most 63 ranks\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    if (pcgrad_mpi_workspace_len(MAXT, NCOL, ranks, &ws_len) != PCGRAD_OK) MPI_Abort(MPI_COMM_WORLD, 2);
    ws = malloc(ws_len * sizeof *ws);
    if (ws == NULL) MPI_Abort(MPI_COMM_WORLD, 2);

    static const size_t ts[] = {1, 3, 5};
    for (int mode = 0; mode < 3; mode++) {
        pcgrad_config cfg = {0};
        cfg.threads = 1;
        cfg.check_finite = 1;
        cfg.mode = mode == 2 ? PCGRAD_MODE_SIMULTANEOUS : PCGRAD_MODE_SEQUENTIAL;
        cfg.order = mode == 1 ? PCGRAD_ORDER_SHUFFLED : PCGRAD_ORDER_FIXED;
        for (int p = 0; p < NPART; p++) {
            if (p == ALIGNED_EMPTY && ranks < 2) continue;
            for (int strategy = 0; strategy < 2; strategy++)
                for (int project = 0; project < 2; project++) {
                    for (int k = 0; k < NKIND; k++)
                        for (size_t ti = 0; ti < 3; ti++) {
                            if (k > MIXED && ts[ti] != 3) continue;
                            run_case((enum kind)k, ts[ti], (enum part)p, 0, cfg, strategy, project);
                        }
                    run_case(GAUSS, 5, (enum part)p, 1, cfg, strategy, project);
                    cfg.reduction = PCGRAD_REDUCTION_SUM;
                    run_case(GAUSS, 3, (enum part)p, 1, cfg, strategy, project);
                    cfg.reduction = PCGRAD_REDUCTION_MEAN;
                }
        }
    }
    for (int b = 0; b < NBAD; b++)
        for (int strategy = 0; strategy < 2; strategy++)
            for (int project = 0; project < 2; project++) run_error((enum bad)b, strategy, project);

    /* Sum the counts of every rank (each compared its own shard). */
    enum { NT = NPART * 4 }; /* outputs, then Grams */
    long counts[NT * 5 + 3], sums[NT * 5 + 3];
    double worst[NT], worst_all[NT];
    for (int i = 0; i < NT; i++) {
        const tally *ty = i < NPART * 2 ? &tallies[i / 2][i % 2] : &gtallies[(i - NPART * 2) / 2][i % 2];
        long v[5] = {ty->bitwise, ty->bitwise_ok, ty->tol, ty->tol_ok, ty->tol_exact};
        memcpy(counts + 5 * i, v, sizeof v);
        worst[i] = ty->worst;
    }
    counts[NT * 5] = failures;
    counts[NT * 5 + 1] = err_ok;
    counts[NT * 5 + 2] = err_checks;
    MPI_Reduce(counts, sums, NT * 5 + 3, MPI_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
    MPI_Reduce(worst, worst_all, NT, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    long total_fail = 0;
    MPI_Allreduce(&failures, &total_fail, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0) {
        printf("shard_test, %d rank%s, N = %d columns, Gram chunk %d (comparisons summed over ranks):\n", ranks,
               ranks > 1 ? "s" : "", NCOL, C);
        for (int i = 0; i < NT; i++) {
            const long *v = sums + 5 * i;
            if (i % (NPART * 2) == 0) printf("  %s:\n", i ? "the Gram matrix (T x T doubles) against pcgrad_gram_flat over all columns"
                                                       : "merged and projected shards (floats) against one process");
            if (v[0] + v[2] == 0) continue;
            printf("    %-28s %-13s bitwise %ld/%ld", part_name[(i % (NPART * 2)) / 2],
                   i % 2 ? "deterministic" : "allreduce", v[1], v[0]);
            if (v[2])
                printf(", within 1e-6: %ld/%ld (worst %.2g of %s; %ld bitwise anyway)", v[3], v[2], worst_all[i],
                       i < NPART * 2 ? "max |input|" : "its largest entry", v[4]);
            printf("\n");
        }
        if (naive_cases)
            printf("  (one partial per rank, added in rank order, would be bitwise in %ld/%ld Gram cases)\n",
                   naive_equal, naive_cases);
        printf("  bad input on one rank: %ld/%ld rank-cases returned the agreed error, buffers untouched, "
               "next call ok\n",
               sums[NT * 5 + 1], sums[NT * 5 + 2]);
        printf("shard_test: %s (%ld failure%s over all ranks)\n", total_fail ? "FAILED" : "passed", total_fail,
               total_fail == 1 ? "" : "s");
    }
    free(ws);
    for (int k = 0; k < NKIND; k++)
        for (int t = 0; t <= MAXT; t++) free(cache[k][t]);
    MPI_Finalize();
    return total_fail ? 1 : 0;
}
