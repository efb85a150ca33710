/* Every status code of pcgrad.h through real bad inputs.
 *
 * Each refused call is checked twice: its status, and that every caller
 * buffer except the workspace is byte-identical afterwards (all of them live
 * in one struct that is compared with a copy taken just before the call).
 * Then pcgrad_status_str for every code and an unknown one, the version
 * macros against pcgrad_version(), the size queries against their formulas,
 * and successful calls against hand-computed results.
 *
 * Prints the number of checks passed; exits 1 on any mismatch. */
#include <pcgrad.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

enum { T = 3, N = 6, S = 2, NV = 3, VMAX = 4, PAD = 4 };
#define NCODES 15 /* PCGRAD_OK and the fourteen errors, 0 down to -14 */

/* Every caller buffer any call below receives, except the workspace. */
static struct fixture {
    pcgrad_config cfg;
    pcgrad_rng rng;
    uint32_t table[T * (T - 1)];
    float grads[T * N + PAD]; /* PAD: room for shifted pointers */
    size_t segs[S];
    uint8_t has[T * S];
    float merged[N + PAD];
    pcgrad_stats stats;
    double matrix[T * T];
    size_t out; /* the size queries */
    /* per variable: T x NV buffers, lengths vsegs */
    float vg[T][NV][VMAX];
    const float *vptr[T * NV];
    size_t vsegs[NV];
    float vout[NV][VMAX];
    float *voutp[NV];
    uint8_t vhas[T * NV];
    float packed[T * (VMAX + 1 + 1)];
    /* phases */
    double gram[2 * T * T];
    double partial[2 * T * T];
    double coef[T * T + 2 * T];
    /* methods */
    pcgrad_method meth;
    double targets[T * T];
    double alpha[T];
    uint64_t step;
    double weights[T];
    double mgram[T * T];
} F, SNAP;

static double WS[2048]; /* the workspace: the only buffer a failure may write */

static int passed, failed;
static int code_seen[NCODES]; /* index -code */

static void fail(const char *what, const char *detail) {
    failed++;
    fprintf(stderr, "FAIL: %s: %s\n", what, detail);
}

static void check(int ok, const char *what) {
    if (ok)
        passed++;
    else
        fail(what, "condition false");
}

static void reset(void) {
    memset(&F, 0, sizeof F);
    /* Three tasks over N = 6 in two segments {4, 2}; tasks 0 and 1 conflict. */
    static const float g[T * N] = {
        1.0f, 0.0f, 2.0f, 0.0f, 1.0f, 0.5f,   /* */
        -1.0f, 1.0f, 0.0f, 0.5f, 0.0f, -1.0f, /* */
        0.5f, 0.5f, -1.0f, 1.0f, 0.25f, 0.0f,
    };
    memcpy(F.grads, g, sizeof g);
    for (int k = T * N; k < T * N + PAD; k++) F.grads[k] = 42.0f;
    F.segs[0] = 4;
    F.segs[1] = 2;
    memset(F.has, 1, sizeof F.has);
    for (int k = 0; k < N + PAD; k++) F.merged[k] = -777.0f;
    F.stats.conflicting_pairs = 99;
    F.stats.projections = 99;
    for (int k = 0; k < T * T; k++) F.matrix[k] = -555.0;
    F.out = 12345;
    F.rng.state = 0x0123456789abcdefULL;
    /* a valid explicit table: row i lists the other tasks, descending */
    for (int i = 0, k = 0; i < T; i++)
        for (int j = T - 1; j >= 0; j--)
            if (j != i) F.table[k++] = (uint32_t)j;
    F.cfg.rng = &F.rng;
    F.cfg.order_table = F.table;
    F.cfg.order_table_len = T * (T - 1);
    /* per variable: var 0 shared (4), var 1 head of task 1 (1), var 2
     * head of task 2 (1); task 0 has no head. */
    F.vsegs[0] = 4;
    F.vsegs[1] = 1;
    F.vsegs[2] = 1;
    for (int t = 0; t < T; t++)
        for (int s = 0; s < NV; s++) {
            for (int k = 0; k < VMAX; k++) F.vg[t][s][k] = (float)(t + 1) * (k % 2 ? -1.0f : 0.5f) + (float)s;
            int present = s == 0 || s == t;
            F.vptr[t * NV + s] = present ? F.vg[t][s] : NULL;
            F.vhas[t * NV + s] = 0x77; /* sentinel */
        }
    for (int s = 0; s < NV; s++) {
        F.voutp[s] = F.vout[s];
        for (int k = 0; k < VMAX; k++) F.vout[s][k] = -333.0f;
    }
    for (size_t k = 0; k < sizeof F.packed / sizeof F.packed[0]; k++) F.packed[k] = -111.0f;
    for (int k = 0; k < 2 * T * T; k++) {
        F.gram[k] = 0.0;
        F.partial[k] = 0.25 * k;
    }
    for (int k = 0; k < T * T + 2 * T; k++) F.coef[k] = -999.0;
    /* methods: a non-fresh state, so that a reset would show */
    for (int k = 0; k < T * T; k++) F.targets[k] = 0.25;
    for (int k = 0; k < T; k++) F.alpha[k] = 0.5;
    F.step = 7;
    for (int k = 0; k < T; k++) F.weights[k] = -444.0;
    F.meth.rng = &F.rng;
    F.meth.targets = F.targets;
    F.meth.targets_len = T * T;
    F.meth.nash_alpha = F.alpha;
    F.meth.nash_alpha_len = T;
    F.meth.nash_step = &F.step;
    for (size_t k = 0; k < sizeof WS / sizeof WS[0]; k++) WS[k] = 0.0;
}

/* One refused (or accepted) call: the status and the untouched buffers. */
static void expect(const char *what, pcgrad_status want, pcgrad_status got) {
    char msg[200];
    if (got != want) {
        snprintf(msg, sizeof msg, "status %d (%s), want %d (%s)", (int)got, pcgrad_status_str(got),
                 (int)want, pcgrad_status_str(want));
        fail(what, msg);
    } else {
        passed++;
        if (-(int)want >= 0 && -(int)want < NCODES) code_seen[-(int)want]++;
    }
    if (want != PCGRAD_OK) {
        if (memcmp(&F, &SNAP, sizeof F) != 0)
            fail(what, "a caller buffer changed on a refused call");
        else
            passed++;
    }
}

/* Snapshot, then the call, then the checks. */
#define EXPECT(what, want, call)              \
    do {                                      \
        memcpy(&SNAP, &F, sizeof F);          \
        pcgrad_status got_ = (call);          \
        expect((what), (want), got_);         \
    } while (0)

/* ------------------------------------------------------------------ */
/* The flat entry points with every argument as a field. */

typedef struct {
    const pcgrad_config *cfg;
    const float *g;
    size_t gl;
    const size_t *seg;
    size_t sl;
    const uint8_t *has;
    size_t hl;
    size_t t, n;
    float *m;
    size_t ml;
    pcgrad_stats *st;
    double *mx;
    size_t mxl;
    double *ws;
    size_t wsl;
} flat_args;

static size_t ws_flat(void) {
    size_t n = 0;
    if (pcgrad_workspace_len(T, &n) != PCGRAD_OK) fail("pcgrad_workspace_len(T)", "refused");
    return n;
}

static flat_args flat_default(void) {
    flat_args a;
    a.cfg = &F.cfg;
    a.g = F.grads;
    a.gl = T * N;
    a.seg = F.segs;
    a.sl = S;
    a.has = F.has;
    a.hl = T * S;
    a.t = T;
    a.n = N;
    a.m = F.merged;
    a.ml = N;
    a.st = &F.stats;
    a.mx = F.matrix;
    a.mxl = T * T;
    a.ws = WS;
    a.wsl = ws_flat();
    return a;
}

static pcgrad_status merge_flat(flat_args a) {
    return pcgrad_merge_flat(a.cfg, a.g, a.gl, a.seg, a.sl, a.has, a.hl, a.t, a.n, a.m, a.ml, a.st,
                             a.mx, a.mxl, a.ws, a.wsl);
}

/* The gradients are the caller's (non-const) F.grads. */
static pcgrad_status project_flat(flat_args a) {
    return pcgrad_project_flat(a.cfg, (float *)(uintptr_t)a.g, a.gl, a.seg, a.sl, a.has, a.hl, a.t,
                               a.n, a.m, a.ml, a.st, a.mx, a.mxl, a.ws, a.wsl);
}

typedef pcgrad_status (*flat_fn)(flat_args);

/* A pointer `bytes` past p, for misalignment and overlap cases (never
 * dereferenced by a refusing library). */
static void *shift(const void *p, size_t bytes) {
    return (void *)((uintptr_t)p + bytes);
}

static void flat_errors(const char *name, flat_fn call) {
    char w[160];
    flat_args a;
#define CASE(label) (snprintf(w, sizeof w, "%s: %s", name, label), w)

    /* the baseline is valid */
    reset();
    a = flat_default();
    EXPECT(CASE("valid baseline"), PCGRAD_OK, call(a));

    /* NULL pointers */
    reset(); a = flat_default(); a.cfg = NULL;
    EXPECT(CASE("config NULL"), PCGRAD_ERROR_NULL_POINTER, call(a));
    reset(); a = flat_default(); a.g = NULL;
    EXPECT(CASE("grads NULL"), PCGRAD_ERROR_NULL_POINTER, call(a));
    reset(); a = flat_default(); a.ws = NULL;
    EXPECT(CASE("workspace NULL"), PCGRAD_ERROR_NULL_POINTER, call(a));
    reset(); a = flat_default(); a.seg = NULL;
    EXPECT(CASE("segments NULL with length 2"), PCGRAD_ERROR_NULL_POINTER, call(a));
    reset(); a = flat_default(); a.has = NULL;
    EXPECT(CASE("has_grad NULL with length T*S"), PCGRAD_ERROR_NULL_POINTER, call(a));
    reset(); a = flat_default(); a.mx = NULL;
    EXPECT(CASE("matrix NULL with length T*T"), PCGRAD_ERROR_NULL_POINTER, call(a));
    reset(); a = flat_default(); a.m = NULL;
    EXPECT(CASE("merged NULL with length N"), PCGRAD_ERROR_NULL_POINTER, call(a));
    reset(); F.cfg.order = PCGRAD_ORDER_SHUFFLED; F.cfg.rng = NULL; a = flat_default();
    EXPECT(CASE("shuffled order, rng NULL"), PCGRAD_ERROR_NULL_POINTER, call(a));
    reset(); F.cfg.order = PCGRAD_ORDER_EXPLICIT; F.cfg.order_table = NULL; a = flat_default();
    EXPECT(CASE("explicit order, table NULL"), PCGRAD_ERROR_NULL_POINTER, call(a));

    /* no tasks */
    reset(); a = flat_default(); a.t = 0; a.gl = 0;
    EXPECT(CASE("zero tasks"), PCGRAD_ERROR_NO_TASKS, call(a));

    /* lengths that do not add up */
    reset(); a = flat_default(); a.gl = T * N - 1;
    EXPECT(CASE("grads_len = T*N - 1"), PCGRAD_ERROR_LENGTH_MISMATCH, call(a));
    reset(); a = flat_default(); a.gl = T * N + 1;
    EXPECT(CASE("grads_len = T*N + 1"), PCGRAD_ERROR_LENGTH_MISMATCH, call(a));
    reset(); a = flat_default(); a.ml = N + 1;
    EXPECT(CASE("merged_len = N + 1"), PCGRAD_ERROR_LENGTH_MISMATCH, call(a));
    reset(); F.segs[1] = 3; a = flat_default();
    EXPECT(CASE("segments sum to N + 1"), PCGRAD_ERROR_LENGTH_MISMATCH, call(a));
    reset(); a = flat_default(); a.hl = T * S - 1;
    EXPECT(CASE("has_grad_len = T*S - 1"), PCGRAD_ERROR_LENGTH_MISMATCH, call(a));
    {
        /* lengths before contents: whatever the extra byte holds */
        uint8_t longer[T * S + 1];
        const uint8_t extras[3] = {1, 7, 255};
        for (int k = 0; k < 3; k++) {
            memcpy(longer, F.has, T * S);
            longer[T * S] = extras[k];
            reset(); a = flat_default(); a.has = longer; a.hl = T * S + 1;
            EXPECT(CASE("has_grad_len = T*S + 1, any extra byte"), PCGRAD_ERROR_LENGTH_MISMATCH,
                   call(a));
        }
    }
    /* one rule for optional buffers: length 0 is absent whatever the pointer */
    reset(); a = flat_default(); a.mxl = 0;
    EXPECT(CASE("matrix non-NULL with length 0: absent"), PCGRAD_OK, call(a));
    check(memcmp(F.matrix, SNAP.matrix, sizeof F.matrix) == 0, "matrix of length 0 is not written");
    reset(); a = flat_default(); a.mx = shift(F.matrix, 4); a.mxl = 0;
    EXPECT(CASE("matrix misaligned with length 0: absent"), PCGRAD_OK, call(a));
    reset(); a = flat_default(); F.cfg.order = PCGRAD_ORDER_EXPLICIT; F.cfg.order_table = NULL;
    F.cfg.order_table_len = 0;
    EXPECT(CASE("explicit order, NULL table at T = 3"), PCGRAD_ERROR_NULL_POINTER, call(a));
    reset(); a = flat_default(); a.seg = NULL; a.sl = 0; /* one segment, has_grad T x 2 */
    EXPECT(CASE("has_grad for 2 segments, segments absent"), PCGRAD_ERROR_LENGTH_MISMATCH, call(a));
    reset(); a = flat_default(); a.mxl = T * T - 1;
    EXPECT(CASE("matrix_len = T*T - 1"), PCGRAD_ERROR_LENGTH_MISMATCH, call(a));
    reset(); F.cfg.order = PCGRAD_ORDER_EXPLICIT; F.cfg.order_table_len = T * (T - 1) - 1; a = flat_default();
    EXPECT(CASE("order table one entry short"), PCGRAD_ERROR_LENGTH_MISMATCH, call(a));

    /* overflow */
    reset(); a = flat_default(); a.t = SIZE_MAX / 2 + 1; a.n = 2;
    EXPECT(CASE("T * N overflows size_t"), PCGRAD_ERROR_OVERFLOW, call(a));
    reset(); a = flat_default(); a.t = (size_t)1 << (sizeof(size_t) * 4); a.n = a.t;
    EXPECT(CASE("T * N overflows size_t (square)"), PCGRAD_ERROR_OVERFLOW, call(a));
    reset(); a = flat_default(); a.gl = SIZE_MAX / 4 + 1;
    EXPECT(CASE("grads_len * 4 bytes overflows"), PCGRAD_ERROR_OVERFLOW, call(a));
    reset(); a = flat_default(); a.wsl = SIZE_MAX / 8 + 1;
    EXPECT(CASE("workspace_len * 8 bytes overflows"), PCGRAD_ERROR_OVERFLOW, call(a));

    /* workspace */
    reset(); a = flat_default(); a.wsl -= 1;
    EXPECT(CASE("workspace one double short"), PCGRAD_ERROR_WORKSPACE_TOO_SMALL, call(a));
    reset(); a = flat_default(); a.wsl = 0;
    EXPECT(CASE("workspace of length 0"), PCGRAD_ERROR_WORKSPACE_TOO_SMALL, call(a));

    /* NaN / Inf with check_finite = 1 */
    reset(); F.cfg.check_finite = 1; F.grads[7] = NAN; a = flat_default();
    EXPECT(CASE("NaN gradient, check_finite"), PCGRAD_ERROR_NON_FINITE, call(a));
    reset(); F.cfg.check_finite = 1; F.grads[T * N - 1] = INFINITY; a = flat_default();
    EXPECT(CASE("+Inf gradient, check_finite"), PCGRAD_ERROR_NON_FINITE, call(a));
    reset(); F.cfg.check_finite = 1; F.cfg.mode = PCGRAD_MODE_SIMULTANEOUS; F.grads[0] = -INFINITY; a = flat_default();
    EXPECT(CASE("-Inf gradient, check_finite, simultaneous"), PCGRAD_ERROR_NON_FINITE, call(a));
    reset(); F.cfg.check_finite = 1; F.grads[0] = 3e38f; F.grads[1] = 3e38f; a = flat_default();
    EXPECT(CASE("finite gradient whose square norm overflows f32 (not f64)"), PCGRAD_OK, call(a));

    /* overlapping outputs */
    reset(); a = flat_default(); a.m = F.grads + 2;
    EXPECT(CASE("merged overlaps grads"), PCGRAD_ERROR_OVERLAP, call(a));
    reset(); a = flat_default(); a.mx = WS + 4;
    EXPECT(CASE("matrix overlaps workspace"), PCGRAD_ERROR_OVERLAP, call(a));
    reset(); a = flat_default(); a.st = (pcgrad_stats *)shift(F.matrix, 8);
    EXPECT(CASE("stats overlaps matrix"), PCGRAD_ERROR_OVERLAP, call(a));
    reset(); a = flat_default(); a.mx = (double *)shift(F.segs, 0);
    EXPECT(CASE("matrix overlaps segments"), PCGRAD_ERROR_OVERLAP, call(a));
    reset(); F.cfg.order = PCGRAD_ORDER_SHUFFLED; F.cfg.rng = (pcgrad_rng *)F.matrix; a = flat_default();
    EXPECT(CASE("PRNG state overlaps matrix"), PCGRAD_ERROR_OVERLAP, call(a));
    reset(); a = flat_default(); a.st = (pcgrad_stats *)shift(&F.cfg, 0);
    EXPECT(CASE("stats overlaps config"), PCGRAD_ERROR_OVERLAP, call(a));

    /* out-of-range enumerations as integers */
    reset(); F.cfg.mode = 2; a = flat_default();
    EXPECT(CASE("mode = 2"), PCGRAD_ERROR_INVALID_ENUM, call(a));
    reset(); F.cfg.order = 3; a = flat_default();
    EXPECT(CASE("order = 3"), PCGRAD_ERROR_INVALID_ENUM, call(a));
    reset(); F.cfg.order = 3; F.cfg.mode = PCGRAD_MODE_SIMULTANEOUS; a = flat_default();
    EXPECT(CASE("order = 3 in simultaneous mode (always validated)"), PCGRAD_ERROR_INVALID_ENUM, call(a));
    reset(); F.cfg.reduction = 2; a = flat_default();
    EXPECT(CASE("reduction = 2"), PCGRAD_ERROR_INVALID_ENUM, call(a));
    reset(); F.cfg.reduction = UINT32_MAX; a = flat_default();
    EXPECT(CASE("reduction = UINT32_MAX"), PCGRAD_ERROR_INVALID_ENUM, call(a));
    reset(); F.cfg.check_finite = 2; a = flat_default();
    EXPECT(CASE("check_finite = 2"), PCGRAD_ERROR_INVALID_ENUM, call(a));
    reset(); F.cfg.matrix = 2; a = flat_default();
    EXPECT(CASE("matrix = 2"), PCGRAD_ERROR_INVALID_ENUM, call(a));
    reset(); F.has[4] = 2; a = flat_default();
    EXPECT(CASE("has_grad byte = 2"), PCGRAD_ERROR_INVALID_ENUM, call(a));

    /* invalid explicit order tables */
    reset(); F.cfg.order = PCGRAD_ORDER_EXPLICIT; F.table[0] = F.table[1]; a = flat_default();
    EXPECT(CASE("order table row with a duplicate"), PCGRAD_ERROR_INVALID_ORDER, call(a));
    reset(); F.cfg.order = PCGRAD_ORDER_EXPLICIT; F.table[2] = 1; a = flat_default();
    EXPECT(CASE("order table row 1 visits task 1"), PCGRAD_ERROR_INVALID_ORDER, call(a));
    reset(); F.cfg.order = PCGRAD_ORDER_EXPLICIT; F.table[5] = T; a = flat_default();
    EXPECT(CASE("order table entry = T"), PCGRAD_ERROR_INVALID_ORDER, call(a));
    reset(); F.cfg.order = PCGRAD_ORDER_EXPLICIT; F.table[3] = UINT32_MAX; a = flat_default();
    EXPECT(CASE("order table entry = UINT32_MAX"), PCGRAD_ERROR_INVALID_ORDER, call(a));

    /* misaligned pointers */
    reset(); a = flat_default(); a.g = shift(F.grads, 1);
    EXPECT(CASE("grads misaligned"), PCGRAD_ERROR_MISALIGNED, call(a));
    reset(); a = flat_default(); a.m = shift(F.merged, 2);
    EXPECT(CASE("merged misaligned"), PCGRAD_ERROR_MISALIGNED, call(a));
    reset(); a = flat_default(); a.ws = shift(WS, 4);
    EXPECT(CASE("workspace misaligned"), PCGRAD_ERROR_MISALIGNED, call(a));
    reset(); a = flat_default(); a.seg = shift(F.segs, 1);
    EXPECT(CASE("segments misaligned"), PCGRAD_ERROR_MISALIGNED, call(a));
    reset(); a = flat_default(); a.mx = shift(F.matrix, 4);
    EXPECT(CASE("matrix misaligned"), PCGRAD_ERROR_MISALIGNED, call(a));
    reset(); a = flat_default(); a.cfg = shift(&F.cfg, 2);
    EXPECT(CASE("config misaligned"), PCGRAD_ERROR_MISALIGNED, call(a));
    reset(); F.cfg.order = PCGRAD_ORDER_SHUFFLED; F.cfg.rng = shift(&F.rng, 1); a = flat_default();
    EXPECT(CASE("PRNG state misaligned"), PCGRAD_ERROR_MISALIGNED, call(a));
#undef CASE
}

/* The in-place entry point's own rules. */
static void project_flat_errors(void) {
    flat_args a;
    reset(); a = flat_default(); a.m = NULL; a.ml = 0;
    EXPECT("project_flat: merged absent", PCGRAD_OK, project_flat(a));
    reset(); a = flat_default(); a.m = F.grads + T * N - 1;
    EXPECT("project_flat: merged overlaps the in-place grads", PCGRAD_ERROR_OVERLAP, project_flat(a));
    reset(); a = flat_default(); a.mx = (double *)shift(F.grads, 8);
    EXPECT("project_flat: matrix overlaps the in-place grads", PCGRAD_ERROR_OVERLAP, project_flat(a));
    reset(); a = flat_default(); a.g = NULL; a.gl = 0; a.n = 0;
    EXPECT("project_flat: grads NULL even with N = 0", PCGRAD_ERROR_NULL_POINTER, project_flat(a));
}

/* ------------------------------------------------------------------ */
/* Per-variable entry points. */

static size_t ws_vars(void) {
    size_t n = 0;
    if (pcgrad_workspace_len_vars(T, NV, &n) != PCGRAD_OK) fail("pcgrad_workspace_len_vars", "refused");
    return n;
}

static pcgrad_status merge_vars(const float *const *g, size_t gl, const size_t *segs, size_t sl,
                                size_t t, float *const *m, size_t ml, double *ws, size_t wsl) {
    return pcgrad_merge_vars(&F.cfg, g, gl, segs, sl, t, m, ml, &F.stats, F.matrix, T * T, ws, wsl);
}

static void vars_errors(void) {
    size_t wsl = ws_vars();
    reset();
    EXPECT("merge_vars: valid baseline", PCGRAD_OK,
           merge_vars(F.vptr, T * NV, F.vsegs, NV, T, F.voutp, NV, WS, wsl));
    reset();
    EXPECT("merge_vars: grads table NULL", PCGRAD_ERROR_NULL_POINTER,
           merge_vars(NULL, T * NV, F.vsegs, NV, T, F.voutp, NV, WS, wsl));
    reset();
    EXPECT("merge_vars: segments NULL", PCGRAD_ERROR_NULL_POINTER,
           merge_vars(F.vptr, T * NV, NULL, NV, T, F.voutp, NV, WS, wsl));
    reset();
    EXPECT("merge_vars: merged table NULL", PCGRAD_ERROR_NULL_POINTER,
           merge_vars(F.vptr, T * NV, F.vsegs, NV, T, NULL, NV, WS, wsl));
    reset(); F.voutp[1] = NULL;
    EXPECT("merge_vars: one merged buffer NULL", PCGRAD_ERROR_NULL_POINTER,
           merge_vars(F.vptr, T * NV, F.vsegs, NV, T, F.voutp, NV, WS, wsl));
    reset();
    EXPECT("merge_vars: zero tasks", PCGRAD_ERROR_NO_TASKS,
           merge_vars(F.vptr, 0, F.vsegs, NV, 0, F.voutp, NV, WS, wsl));
    reset();
    EXPECT("merge_vars: grads_len = T*S - 1", PCGRAD_ERROR_LENGTH_MISMATCH,
           merge_vars(F.vptr, T * NV - 1, F.vsegs, NV, T, F.voutp, NV, WS, wsl));
    reset();
    EXPECT("merge_vars: merged_len = S - 1", PCGRAD_ERROR_LENGTH_MISMATCH,
           merge_vars(F.vptr, T * NV, F.vsegs, NV, T, F.voutp, NV - 1, WS, wsl));
    reset();
    EXPECT("merge_vars: T * S overflows", PCGRAD_ERROR_OVERFLOW,
           merge_vars(F.vptr, T * NV, F.vsegs, NV, SIZE_MAX / 2, F.voutp, NV, WS, wsl));
    reset(); F.vsegs[0] = SIZE_MAX; F.vsegs[1] = 2; /* the sum of the lengths overflows */
    EXPECT("merge_vars: segment lengths overflow", PCGRAD_ERROR_OVERFLOW,
           merge_vars(F.vptr, T * NV, F.vsegs, NV, T, F.voutp, NV, WS, wsl));
    reset();
    EXPECT("merge_vars: workspace one double short", PCGRAD_ERROR_WORKSPACE_TOO_SMALL,
           merge_vars(F.vptr, T * NV, F.vsegs, NV, T, F.voutp, NV, WS, wsl - 1));
    reset();
    EXPECT("merge_vars: flat-sized workspace", PCGRAD_ERROR_WORKSPACE_TOO_SMALL,
           merge_vars(F.vptr, T * NV, F.vsegs, NV, T, F.voutp, NV, WS, ws_flat()));
    reset(); F.cfg.check_finite = 1; F.vg[0][1][0] = NAN; /* task 0 has no var 1: ignored */
    EXPECT("merge_vars: NaN in a buffer the table does not point at", PCGRAD_OK,
           merge_vars(F.vptr, T * NV, F.vsegs, NV, T, F.voutp, NV, WS, wsl));
    reset(); F.cfg.check_finite = 1; F.vg[1][1][0] = NAN; /* task 1's head */
    EXPECT("merge_vars: NaN in a head, check_finite", PCGRAD_ERROR_NON_FINITE,
           merge_vars(F.vptr, T * NV, F.vsegs, NV, T, F.voutp, NV, WS, wsl));
    reset(); F.cfg.check_finite = 1; F.vg[2][0][3] = INFINITY;
    EXPECT("merge_vars: Inf in a shared variable, check_finite", PCGRAD_ERROR_NON_FINITE,
           merge_vars(F.vptr, T * NV, F.vsegs, NV, T, F.voutp, NV, WS, wsl));
    reset(); F.voutp[2] = F.vg[0][0]; /* writes over task 0's shared gradient */
    EXPECT("merge_vars: merged buffer is an input buffer", PCGRAD_ERROR_OVERLAP,
           merge_vars(F.vptr, T * NV, F.vsegs, NV, T, F.voutp, NV, WS, wsl));
    reset(); F.voutp[1] = F.vout[0] + 3; /* var 0 is 4 long: its last float */
    EXPECT("merge_vars: two merged buffers overlap", PCGRAD_ERROR_OVERLAP,
           merge_vars(F.vptr, T * NV, F.vsegs, NV, T, F.voutp, NV, WS, wsl));
    reset(); F.voutp[0] = (float *)WS;
    EXPECT("merge_vars: merged buffer inside the workspace", PCGRAD_ERROR_OVERLAP,
           merge_vars(F.vptr, T * NV, F.vsegs, NV, T, F.voutp, NV, WS, wsl));
    reset(); F.voutp[0] = (float *)F.vptr;
    EXPECT("merge_vars: merged buffer over the pointer table", PCGRAD_ERROR_OVERLAP,
           merge_vars(F.vptr, T * NV, F.vsegs, NV, T, F.voutp, NV, WS, wsl));
    reset(); F.cfg.mode = 7;
    EXPECT("merge_vars: mode = 7", PCGRAD_ERROR_INVALID_ENUM,
           merge_vars(F.vptr, T * NV, F.vsegs, NV, T, F.voutp, NV, WS, wsl));
    reset(); F.cfg.order = PCGRAD_ORDER_EXPLICIT; F.table[4] = 2; /* row 2 visits 2 */
    EXPECT("merge_vars: invalid order table", PCGRAD_ERROR_INVALID_ORDER,
           merge_vars(F.vptr, T * NV, F.vsegs, NV, T, F.voutp, NV, WS, wsl));
    reset(); F.vptr[1] = shift(F.vg[0][1], 2); /* a cell task 0 does not use */
    EXPECT("merge_vars: misaligned gradient buffer", PCGRAD_ERROR_MISALIGNED,
           merge_vars(F.vptr, T * NV, F.vsegs, NV, T, F.voutp, NV, WS, wsl));
    reset(); F.voutp[2] = shift(F.vout[2], 1);
    EXPECT("merge_vars: misaligned merged buffer", PCGRAD_ERROR_MISALIGNED,
           merge_vars(F.vptr, T * NV, F.vsegs, NV, T, F.voutp, NV, WS, wsl));
    reset();
    EXPECT("merge_vars: misaligned pointer table", PCGRAD_ERROR_MISALIGNED,
           merge_vars(shift(F.vptr, 4), T * NV, F.vsegs, NV, T, F.voutp, NV, WS, wsl));

    /* in place: a present buffer may not be given twice */
    reset(); F.vptr[1 * NV + 0] = F.vptr[0];
    EXPECT("project_vars: two tasks share one in-place buffer", PCGRAD_ERROR_OVERLAP,
           pcgrad_project_vars(&F.cfg, (float *const *)(uintptr_t)F.vptr, T * NV, F.vsegs, NV, T, NULL, 0,
                               NULL, NULL, 0, WS, wsl));
    reset();
    EXPECT("project_vars: merged NULL with length S", PCGRAD_ERROR_NULL_POINTER,
           pcgrad_project_vars(&F.cfg, (float *const *)(uintptr_t)F.vptr, T * NV, F.vsegs, NV, T, NULL, NV,
                               NULL, NULL, 0, WS, wsl));

    /* pack and unflatten */
    size_t n = F.vsegs[0] + F.vsegs[1] + F.vsegs[2];
    reset();
    EXPECT("pack: valid baseline", PCGRAD_OK,
           pcgrad_pack(F.vptr, T * NV, F.vsegs, NV, T, F.packed, T * n, F.vhas, T * NV));
    reset();
    EXPECT("pack: out_len = T*N + 1", PCGRAD_ERROR_LENGTH_MISMATCH,
           pcgrad_pack(F.vptr, T * NV, F.vsegs, NV, T, F.packed, T * n + 1, F.vhas, T * NV));
    reset();
    EXPECT("pack: has_grad_len = T*S - 1", PCGRAD_ERROR_LENGTH_MISMATCH,
           pcgrad_pack(F.vptr, T * NV, F.vsegs, NV, T, F.packed, T * n, F.vhas, T * NV - 1));
    reset();
    EXPECT("pack: has_grad NULL", PCGRAD_ERROR_NULL_POINTER,
           pcgrad_pack(F.vptr, T * NV, F.vsegs, NV, T, F.packed, T * n, NULL, T * NV));
    reset();
    EXPECT("pack: out overlaps an input buffer", PCGRAD_ERROR_OVERLAP,
           pcgrad_pack(F.vptr, T * NV, F.vsegs, NV, T, F.vg[0][0], T * n, F.vhas, T * NV));
    reset();
    EXPECT("pack: zero tasks", PCGRAD_ERROR_NO_TASKS,
           pcgrad_pack(F.vptr, 0, F.vsegs, NV, 0, F.packed, 0, F.vhas, 0));
    reset();
    EXPECT("unflatten: valid baseline", PCGRAD_OK,
           pcgrad_unflatten(F.grads, n, F.vsegs, NV, F.voutp, NV));
    reset();
    EXPECT("unflatten: flat_len = N + 1", PCGRAD_ERROR_LENGTH_MISMATCH,
           pcgrad_unflatten(F.grads, n + 1, F.vsegs, NV, F.voutp, NV));
    reset();
    EXPECT("unflatten: outs_len = S + 1", PCGRAD_ERROR_LENGTH_MISMATCH,
           pcgrad_unflatten(F.grads, n, F.vsegs, NV, F.voutp, NV + 1));
    reset(); F.voutp[1] = F.grads + 1;
    EXPECT("unflatten: an output overlaps the input", PCGRAD_ERROR_OVERLAP,
           pcgrad_unflatten(F.grads, n, F.vsegs, NV, F.voutp, NV));
    reset();
    EXPECT("unflatten: misaligned input", PCGRAD_ERROR_MISALIGNED,
           pcgrad_unflatten(shift(F.grads, 3), n, F.vsegs, NV, F.voutp, NV));
}

/* ------------------------------------------------------------------ */
/* Sizes, config, the three phases. */

static void sizes_and_phases(void) {
    size_t gl = 0, cl = 0, tl = 0;
    check(pcgrad_gram_len(T, &gl) == PCGRAD_OK && gl == 2 * T * T, "gram_len = 2 T^2");
    check(pcgrad_coefficients_len(T, &cl) == PCGRAD_OK && cl == T * T + 2 * T, "coefficients_len = T^2 + 2T");
    check(pcgrad_tile_len(T, &tl) == PCGRAD_OK && tl == 32 * (T + 1), "tile_len = 32 (T + 1)");
    double *tile = WS;

    reset();
    EXPECT("workspace_len: out NULL", PCGRAD_ERROR_NULL_POINTER, pcgrad_workspace_len(T, NULL));
    EXPECT("workspace_len: zero tasks", PCGRAD_ERROR_NO_TASKS, pcgrad_workspace_len(0, &F.out));
    EXPECT("workspace_len: T = SIZE_MAX", PCGRAD_ERROR_OVERFLOW, pcgrad_workspace_len(SIZE_MAX, &F.out));
    EXPECT("workspace_len: out misaligned", PCGRAD_ERROR_MISALIGNED,
           pcgrad_workspace_len(T, shift(&F.out, 1)));
    EXPECT("workspace_len_vars: T * S overflows", PCGRAD_ERROR_OVERFLOW,
           pcgrad_workspace_len_vars(SIZE_MAX / 2, 4, &F.out));
    EXPECT("workspace_len_vars: zero tasks", PCGRAD_ERROR_NO_TASKS, pcgrad_workspace_len_vars(0, 4, &F.out));
    EXPECT("gram_len: zero tasks", PCGRAD_ERROR_NO_TASKS, pcgrad_gram_len(0, &F.out));
    EXPECT("gram_len: overflow", PCGRAD_ERROR_OVERFLOW, pcgrad_gram_len(SIZE_MAX / 2, &F.out));
    EXPECT("coefficients_len: out NULL", PCGRAD_ERROR_NULL_POINTER, pcgrad_coefficients_len(T, NULL));
    EXPECT("tile_len: overflow", PCGRAD_ERROR_OVERFLOW, pcgrad_tile_len(SIZE_MAX, &F.out));
    EXPECT("config_default: NULL", PCGRAD_ERROR_NULL_POINTER, pcgrad_config_default(NULL));
    EXPECT("config_default: misaligned", PCGRAD_ERROR_MISALIGNED, pcgrad_config_default(shift(&F.cfg, 4)));

    /* config_default equals a zeroed struct */
    {
        pcgrad_config d, z;
        memset(&d, 0xAB, sizeof d);
        memset(&z, 0, sizeof z);
        check(pcgrad_config_default(&d) == PCGRAD_OK, "config_default: OK");
        check(d.mode == 0 && d.order == 0 && d.reduction == 0 && d.check_finite == 0 && d.matrix == 0 &&
                  d.threads == 0 && d.order_table == NULL && d.order_table_len == 0 && d.rng == NULL,
              "config_default: every field zero/NULL");
        (void)z;
    }

    /* phase 1 */
    reset();
    EXPECT("gram_flat: valid", PCGRAD_OK,
           pcgrad_gram_flat(F.grads, T * N, F.segs, S, F.has, T * S, T, N, 1, 5, F.gram, gl));
    reset();
    EXPECT("gram_flat: lo > hi", PCGRAD_ERROR_INVALID_RANGE,
           pcgrad_gram_flat(F.grads, T * N, F.segs, S, F.has, T * S, T, N, 4, 3, F.gram, gl));
    reset();
    EXPECT("gram_flat: hi > N", PCGRAD_ERROR_INVALID_RANGE,
           pcgrad_gram_flat(F.grads, T * N, F.segs, S, F.has, T * S, T, N, 0, N + 1, F.gram, gl));
    reset();
    EXPECT("gram_flat: lo = hi = SIZE_MAX", PCGRAD_ERROR_INVALID_RANGE,
           pcgrad_gram_flat(F.grads, T * N, F.segs, S, F.has, T * S, T, N, SIZE_MAX, SIZE_MAX, F.gram, gl));
    reset();
    EXPECT("gram_flat: gram one double short", PCGRAD_ERROR_WORKSPACE_TOO_SMALL,
           pcgrad_gram_flat(F.grads, T * N, F.segs, S, F.has, T * S, T, N, 0, N, F.gram, gl - 1));
    reset();
    EXPECT("gram_flat: gram overlaps grads", PCGRAD_ERROR_OVERLAP,
           pcgrad_gram_flat(F.grads, T * N, F.segs, S, F.has, T * S, T, N, 0, N, (double *)F.grads, gl));
    reset();
    EXPECT("gram_combine: gram = partial", PCGRAD_ERROR_OVERLAP,
           pcgrad_gram_combine(F.gram, T * T, T, F.gram, T * T));
    reset();
    EXPECT("gram_combine: partial too short", PCGRAD_ERROR_LENGTH_MISMATCH,
           pcgrad_gram_combine(F.partial, T * T - 1, T, F.gram, T * T));

    /* phase 2 */
    reset();
    EXPECT("coefficients: valid", PCGRAD_OK, pcgrad_coefficients(&F.cfg, F.partial, T * T, T, &F.stats, F.coef, cl));
    reset();
    EXPECT("coefficients: coef one short", PCGRAD_ERROR_WORKSPACE_TOO_SMALL,
           pcgrad_coefficients(&F.cfg, F.partial, T * T, T, &F.stats, F.coef, cl - 1));
    reset();
    EXPECT("coefficients: gram_len = T*T - 1", PCGRAD_ERROR_LENGTH_MISMATCH,
           pcgrad_coefficients(&F.cfg, F.partial, T * T - 1, T, &F.stats, F.coef, cl));
    reset(); F.cfg.check_finite = 1; F.partial[T + 1] = NAN; /* diagonal entry (1, 1) */
    EXPECT("coefficients: NaN on the Gram diagonal", PCGRAD_ERROR_NON_FINITE,
           pcgrad_coefficients(&F.cfg, F.partial, T * T, T, &F.stats, F.coef, cl));
    /* every Gram entry is checked, not only the diagonal */
    reset(); F.cfg.check_finite = 1; F.partial[1] = -INFINITY; /* entry (0, 1) */
    EXPECT("coefficients: -inf off the Gram diagonal", PCGRAD_ERROR_NON_FINITE,
           pcgrad_coefficients(&F.cfg, F.partial, T * T, T, &F.stats, F.coef, cl));
    reset(); F.cfg.check_finite = 1; F.partial[T * T - 2] = NAN; /* entry (T-1, T-2) */
    EXPECT("coefficients: NaN off the Gram diagonal", PCGRAD_ERROR_NON_FINITE,
           pcgrad_coefficients(&F.cfg, F.partial, T * T, T, &F.stats, F.coef, cl));
    /* an explicit order with a NULL table at T = 3 */
    reset(); F.cfg.order = PCGRAD_ORDER_EXPLICIT; F.cfg.order_table = NULL; F.cfg.order_table_len = 0;
    EXPECT("coefficients: explicit order, NULL table", PCGRAD_ERROR_NULL_POINTER,
           pcgrad_coefficients(&F.cfg, F.partial, T * T, T, &F.stats, F.coef, cl));
    reset(); F.cfg.order = PCGRAD_ORDER_SHUFFLED; F.cfg.rng = (pcgrad_rng *)F.coef;
    EXPECT("coefficients: PRNG state inside coef", PCGRAD_ERROR_OVERLAP,
           pcgrad_coefficients(&F.cfg, F.partial, T * T, T, &F.stats, F.coef, cl));
    reset(); F.cfg.order = PCGRAD_ORDER_EXPLICIT; F.table[0] = 0;
    EXPECT("coefficients: invalid order table", PCGRAD_ERROR_INVALID_ORDER,
           pcgrad_coefficients(&F.cfg, F.partial, T * T, T, &F.stats, F.coef, cl));
    reset(); F.cfg.order = PCGRAD_ORDER_SHUFFLED;
    EXPECT("coefficients: shuffled advances the PRNG", PCGRAD_OK,
           pcgrad_coefficients(&F.cfg, F.partial, T * T, T, NULL, F.coef, cl));
    check(F.rng.state != SNAP.rng.state, "coefficients: PRNG state advanced on success");

    /* phase 3 */
    reset();
    EXPECT("apply_merged_flat: valid", PCGRAD_OK,
           pcgrad_apply_merged_flat(F.grads, T * N, F.segs, S, F.has, T * S, F.coef, cl, T, N,
                                    PCGRAD_REDUCTION_MEAN, 2, 5, F.merged, 3, tile, tl));
    reset();
    EXPECT("apply_merged_flat: reduction = 2", PCGRAD_ERROR_INVALID_ENUM,
           pcgrad_apply_merged_flat(F.grads, T * N, F.segs, S, F.has, T * S, F.coef, cl, T, N, 2, 2, 5,
                                    F.merged, 3, tile, tl));
    reset();
    EXPECT("apply_merged_flat: lo > hi", PCGRAD_ERROR_INVALID_RANGE,
           pcgrad_apply_merged_flat(F.grads, T * N, F.segs, S, F.has, T * S, F.coef, cl, T, N,
                                    PCGRAD_REDUCTION_SUM, 5, 2, F.merged, 0, tile, tl));
    reset();
    EXPECT("apply_merged_flat: hi > N", PCGRAD_ERROR_INVALID_RANGE,
           pcgrad_apply_merged_flat(F.grads, T * N, F.segs, S, F.has, T * S, F.coef, cl, T, N,
                                    PCGRAD_REDUCTION_SUM, 4, N + 1, F.merged, 3, tile, tl));
    reset();
    EXPECT("apply_merged_flat: merged_len != hi - lo", PCGRAD_ERROR_LENGTH_MISMATCH,
           pcgrad_apply_merged_flat(F.grads, T * N, F.segs, S, F.has, T * S, F.coef, cl, T, N,
                                    PCGRAD_REDUCTION_SUM, 2, 5, F.merged, 4, tile, tl));
    reset();
    EXPECT("apply_merged_flat: tile one short", PCGRAD_ERROR_WORKSPACE_TOO_SMALL,
           pcgrad_apply_merged_flat(F.grads, T * N, F.segs, S, F.has, T * S, F.coef, cl, T, N,
                                    PCGRAD_REDUCTION_SUM, 2, 5, F.merged, 3, tile, tl - 1));
    reset();
    EXPECT("apply_merged_flat: coef NULL", PCGRAD_ERROR_NULL_POINTER,
           pcgrad_apply_merged_flat(F.grads, T * N, F.segs, S, F.has, T * S, NULL, cl, T, N,
                                    PCGRAD_REDUCTION_SUM, 2, 5, F.merged, 3, tile, tl));
    reset();
    EXPECT("apply_projected_flat: lo > hi", PCGRAD_ERROR_INVALID_RANGE,
           pcgrad_apply_projected_flat(F.grads, T * N, F.segs, S, F.has, T * S, F.coef, cl, T, N,
                                       PCGRAD_REDUCTION_MEAN, 3, 1, NULL, 0, tile, tl));
    reset();
    EXPECT("apply_projected_flat: merged overlaps grads", PCGRAD_ERROR_OVERLAP,
           pcgrad_apply_projected_flat(F.grads, T * N, F.segs, S, F.has, T * S, F.coef, cl, T, N,
                                       PCGRAD_REDUCTION_MEAN, 0, 2, F.grads + 10, 2, tile, tl));
    reset();
    EXPECT("apply_projected_flat: coef overlaps tile", PCGRAD_ERROR_OVERLAP,
           pcgrad_apply_projected_flat(F.grads, T * N, F.segs, S, F.has, T * S, WS + 8, cl, T, N,
                                       PCGRAD_REDUCTION_MEAN, 0, 2, NULL, 0, tile, tl));
}

/* ------------------------------------------------------------------ */
/* Strings and versions. */

/* ------------------------------------------------------------------ */
/* The methods: phase 2 on a Gram matrix from the phase API, and the one
 * call. */

static pcgrad_status weights_call(void) {
    return pcgrad_method_weights(&F.meth, F.mgram, T * T, T, F.weights, T, WS, sizeof WS / sizeof WS[0]);
}

static pcgrad_status aggregate_call(void) {
    return pcgrad_aggregate_flat(&F.meth, F.grads, T * N, NULL, 0, NULL, 0, T, N, F.merged, N, WS,
                                 sizeof WS / sizeof WS[0]);
}

static pcgrad_status vars_call(void) {
    return pcgrad_aggregate_vars(&F.meth, F.vptr, T * NV, F.vsegs, NV, T, F.voutp, NV, WS, sizeof WS / sizeof WS[0]);
}

/* The Gram matrix of the fixture's gradients, by pcgrad_gram_flat. */
static void method_gram(void) {
    double g[2 * T * T] = {0};
    if (pcgrad_gram_flat(F.grads, T * N, NULL, 0, NULL, 0, T, N, 0, N, g, 2 * T * T) != PCGRAD_OK)
        fail("pcgrad_gram_flat for the methods", "refused");
    memcpy(F.mgram, g, sizeof F.mgram);
}

static void method_errors(void) {
    static const uint32_t kinds[] = {
        PCGRAD_METHOD_PCGRAD,   PCGRAD_METHOD_PPCGRAD,     PCGRAD_METHOD_MGDA,     PCGRAD_METHOD_UPGRAD,
        PCGRAD_METHOD_DUALPROJ, PCGRAD_METHOD_CAGRAD,      PCGRAD_METHOD_IMTL_G,   PCGRAD_METHOD_ALIGNED_MTL,
        PCGRAD_METHOD_NASH_MTL, PCGRAD_METHOD_GRADVAC,     PCGRAD_METHOD_MEAN,     PCGRAD_METHOD_SUM,
        PCGRAD_METHOD_RANDOM,
    };
    for (uint32_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        char what[80];
        snprintf(what, sizeof what, "PCGRAD_METHOD constant %u is never renumbered", (unsigned)k);
        check(kinds[k] == k, what);
    }
    size_t n = 0;
    reset();
    method_gram();
    /* unknown kind */
    F.meth.kind = 13;
    EXPECT("method: unknown kind 13", PCGRAD_ERROR_INVALID_ENUM, weights_call());
    EXPECT("method: unknown kind 13, aggregate", PCGRAD_ERROR_INVALID_ENUM, aggregate_call());
    EXPECT("method: unknown kind 13, aggregate_vars", PCGRAD_ERROR_INVALID_ENUM, vars_call());
    EXPECT("method_workspace_len: unknown kind", PCGRAD_ERROR_INVALID_ENUM, pcgrad_method_workspace_len(&F.meth, T, &F.out));
    F.meth.kind = UINT32_MAX;
    EXPECT("method: unknown kind UINT32_MAX", PCGRAD_ERROR_INVALID_ENUM, weights_call());
    /* NULL method, NULL out */
    EXPECT("method_weights: NULL method", PCGRAD_ERROR_NULL_POINTER,
           pcgrad_method_weights(NULL, F.mgram, T * T, T, F.weights, T, WS, 16));
    F.meth.kind = PCGRAD_METHOD_UPGRAD;
    EXPECT("method_workspace_len: NULL out", PCGRAD_ERROR_NULL_POINTER, pcgrad_method_workspace_len(&F.meth, T, NULL));
    EXPECT("method_workspace_len: T = 0", PCGRAD_ERROR_NO_TASKS, pcgrad_method_workspace_len(&F.meth, 0, &F.out));
    /* T too large for the method's workspace */
    EXPECT("method_workspace_len: T = SIZE_MAX / 2", PCGRAD_ERROR_OVERFLOW,
           pcgrad_method_workspace_len(&F.meth, SIZE_MAX / 2, &F.out));
    EXPECT("aggregate_workspace_len: T = 2^33", PCGRAD_ERROR_OVERFLOW,
           pcgrad_aggregate_workspace_len(&F.meth, (size_t)1 << 33, &F.out));
    if (pcgrad_method_workspace_len(&F.meth, T, &n) != PCGRAD_OK) fail("method_workspace_len(UPGRAD)", "refused");
    EXPECT("method_weights: workspace one short", PCGRAD_ERROR_WORKSPACE_TOO_SMALL,
           pcgrad_method_weights(&F.meth, F.mgram, T * T, T, F.weights, T, WS, n - 1));
    EXPECT("method_weights: gram_len T*T - 1", PCGRAD_ERROR_LENGTH_MISMATCH,
           pcgrad_method_weights(&F.meth, F.mgram, T * T - 1, T, F.weights, T, WS, n));
    EXPECT("method_weights: weights_len T + 1", PCGRAD_ERROR_LENGTH_MISMATCH,
           pcgrad_method_weights(&F.meth, F.mgram, T * T, T, F.weights, T + 1, WS, n));
    EXPECT("method_weights: NULL gram", PCGRAD_ERROR_NULL_POINTER,
           pcgrad_method_weights(&F.meth, NULL, T * T, T, F.weights, T, WS, n));
    EXPECT("method_weights: misaligned weights", PCGRAD_ERROR_MISALIGNED,
           pcgrad_method_weights(&F.meth, F.mgram, T * T, T, (double *)shift(F.weights, 1), T, WS, n));
    EXPECT("method_weights: weights inside the workspace", PCGRAD_ERROR_OVERLAP,
           pcgrad_method_weights(&F.meth, F.mgram, T * T, T, WS, T, WS, n));
    /* negative and NaN parameters */
    F.meth.kind = PCGRAD_METHOD_CAGRAD;
    F.meth.c = -0.5;
    EXPECT("method: CAGrad c = -0.5", PCGRAD_ERROR_INVALID_PARAMETER, weights_call());
    EXPECT("method: CAGrad c = -0.5, aggregate", PCGRAD_ERROR_INVALID_PARAMETER, aggregate_call());
    EXPECT("method: CAGrad c = -0.5, aggregate_vars", PCGRAD_ERROR_INVALID_PARAMETER, vars_call());
    F.meth.c = NAN;
    EXPECT("method: CAGrad c = NaN", PCGRAD_ERROR_INVALID_PARAMETER, weights_call());
    F.meth.c = INFINITY;
    EXPECT("method: CAGrad c = inf", PCGRAD_ERROR_INVALID_PARAMETER, weights_call());
    F.meth.c = 0.0;
    F.meth.kind = PCGRAD_METHOD_MGDA;
    F.meth.tol = NAN;
    EXPECT("method: MGDA tol = NaN", PCGRAD_ERROR_INVALID_PARAMETER, weights_call());
    F.meth.tol = 0.0;
    F.meth.kind = PCGRAD_METHOD_UPGRAD;
    F.meth.reg = -1e-9;
    EXPECT("method: UPGrad reg < 0", PCGRAD_ERROR_INVALID_PARAMETER, weights_call());
    F.meth.kind = PCGRAD_METHOD_DUALPROJ;
    F.meth.reg = NAN;
    EXPECT("method: DualProj reg = NaN", PCGRAD_ERROR_INVALID_PARAMETER, weights_call());
    F.meth.reg = 0.0;
    F.meth.kind = PCGRAD_METHOD_IMTL_G;
    F.meth.eps = -1.0;
    EXPECT("method: IMTL-G eps < 0", PCGRAD_ERROR_INVALID_PARAMETER, weights_call());
    F.meth.eps = 0.0;
    F.meth.kind = PCGRAD_METHOD_GRADVAC;
    F.meth.beta = 1.5;
    EXPECT("method: GradVac beta = 1.5", PCGRAD_ERROR_INVALID_PARAMETER, weights_call());
    EXPECT("method: GradVac beta = 1.5, aggregate", PCGRAD_ERROR_INVALID_PARAMETER, aggregate_call());
    F.meth.beta = NAN;
    EXPECT("method: GradVac beta = NaN", PCGRAD_ERROR_INVALID_PARAMETER, weights_call());
    F.meth.beta = 0.0;
    F.meth.kind = PCGRAD_METHOD_NASH_MTL;
    F.meth.max_norm = -1.0;
    EXPECT("method: Nash-MTL max_norm < 0", PCGRAD_ERROR_INVALID_PARAMETER, weights_call());
    F.meth.max_norm = NAN;
    EXPECT("method: Nash-MTL max_norm = NaN", PCGRAD_ERROR_INVALID_PARAMETER, weights_call());
    F.meth.max_norm = 0.0;
    F.meth.kind = PCGRAD_METHOD_ALIGNED_MTL;
    F.meth.scale = 3;
    EXPECT("method: Aligned-MTL scale 3", PCGRAD_ERROR_INVALID_ENUM, weights_call());
    F.meth.scale = PCGRAD_ALIGNED_SCALE_MIN;
    /* NULL state where required */
    F.meth.kind = PCGRAD_METHOD_RANDOM;
    F.meth.rng = NULL;
    EXPECT("method: Random with NULL rng", PCGRAD_ERROR_NULL_POINTER, weights_call());
    F.meth.kind = PCGRAD_METHOD_GRADVAC;
    EXPECT("method: GradVac with NULL rng", PCGRAD_ERROR_NULL_POINTER, weights_call());
    F.meth.rng = &F.rng;
    F.meth.targets = NULL;
    EXPECT("method: GradVac with NULL targets", PCGRAD_ERROR_NULL_POINTER, weights_call());
    F.meth.targets = F.targets;
    F.meth.targets_len = T;
    EXPECT("method: GradVac targets_len T", PCGRAD_ERROR_LENGTH_MISMATCH, weights_call());
    F.meth.targets_len = T * T;
    F.targets[1] = NAN;
    EXPECT("method: GradVac NaN target", PCGRAD_ERROR_NON_FINITE, weights_call());
    F.targets[1] = 0.25;
    F.meth.kind = PCGRAD_METHOD_NASH_MTL;
    F.meth.nash_alpha = NULL;
    EXPECT("method: Nash-MTL with NULL alpha", PCGRAD_ERROR_NULL_POINTER, weights_call());
    F.meth.nash_alpha = F.alpha;
    F.meth.nash_step = NULL;
    EXPECT("method: Nash-MTL with NULL step", PCGRAD_ERROR_NULL_POINTER, aggregate_call());
    EXPECT("method: Nash-MTL with NULL step, aggregate_vars", PCGRAD_ERROR_NULL_POINTER, vars_call());
    F.meth.nash_step = &F.step;
    F.meth.nash_alpha = F.weights;
    EXPECT("method: Nash-MTL alpha = the weights", PCGRAD_ERROR_OVERLAP, weights_call());
    F.meth.nash_alpha = F.alpha;
    /* PCGrad kinds: the config's mode must agree */
    F.meth.kind = PCGRAD_METHOD_PPCGRAD;
    F.meth.config = &F.cfg;
    EXPECT("method: PPCGrad with a sequential config", PCGRAD_ERROR_INVALID_ENUM, aggregate_call());
    F.meth.config = NULL;
    /* a Gram matrix from the phase API made non-PSD or non-finite */
    F.meth.kind = PCGRAD_METHOD_UPGRAD;
    F.mgram[0] = -1.0;
    EXPECT("method: Gram with a negative diagonal", PCGRAD_ERROR_NOT_PSD, weights_call());
    method_gram();
    F.mgram[1] = F.mgram[3] = 10.0 * sqrt(F.mgram[0] * F.mgram[4]);
    EXPECT("method: Gram with |G01| > sqrt(G00 G11)", PCGRAD_ERROR_NOT_PSD, weights_call());
    method_gram();
    F.mgram[4] = NAN;
    F.meth.kind = PCGRAD_METHOD_MGDA;
    EXPECT("method: Gram with NaN", PCGRAD_ERROR_NON_FINITE, weights_call());
    F.mgram[4] = INFINITY;
    EXPECT("method: Gram with inf", PCGRAD_ERROR_NON_FINITE, weights_call());
    method_gram();
    /* non-finite gradients in the one call */
    F.grads[2] = NAN;
    EXPECT("method: aggregate of a NaN gradient", PCGRAD_ERROR_NON_FINITE, aggregate_call());
    F.vg[1][0][1] = INFINITY;
    EXPECT("method: aggregate_vars of an infinite gradient", PCGRAD_ERROR_NON_FINITE, vars_call());
    /* a successful per-variable call */
    F.vg[1][0][1] = 1.0f;
    F.meth.kind = PCGRAD_METHOD_MEAN;
    check(vars_call() == PCGRAD_OK, "method: aggregate_vars MEAN OK");
    {
        double err = 0.0;
        for (int k = 0; k < 4; k++)
            err = fmax(err, fabs(F.vout[0][k] - ((double)F.vg[0][0][k] + F.vg[1][0][k] + F.vg[2][0][k]) / 3.0));
        err = fmax(err, fabs(F.vout[1][0] - F.vg[1][1][0] / 3.0)); /* only task 1 has variable 1 */
        check(err <= 1e-6, "method: aggregate_vars MEAN = the mean per variable");
    }
    reset();
}

static void strings(void) {
    static const int codes[NCODES] = {
        PCGRAD_OK,
        PCGRAD_ERROR_NULL_POINTER,
        PCGRAD_ERROR_NO_TASKS,
        PCGRAD_ERROR_LENGTH_MISMATCH,
        PCGRAD_ERROR_OVERFLOW,
        PCGRAD_ERROR_WORKSPACE_TOO_SMALL,
        PCGRAD_ERROR_NON_FINITE,
        PCGRAD_ERROR_OVERLAP,
        PCGRAD_ERROR_INVALID_ENUM,
        PCGRAD_ERROR_INVALID_ORDER,
        PCGRAD_ERROR_INVALID_RANGE,
        PCGRAD_ERROR_MISALIGNED,
        PCGRAD_ERROR_INVALID_PARAMETER,
        PCGRAD_ERROR_NOT_PSD,
        PCGRAD_ERROR_UNSUPPORTED,
    };
    const char *unknown = pcgrad_status_str(1);
    check(unknown != NULL && strcmp(unknown, "unknown status") == 0, "status_str(1) = \"unknown status\"");
    const int bad[] = {-15, -100, 15, INT32_MIN, INT32_MAX};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        const char *s = pcgrad_status_str(bad[k]);
        check(s != NULL && strcmp(s, unknown) == 0, "status_str(unknown code) = \"unknown status\"");
    }
    for (int k = 0; k < NCODES; k++) {
        char what[80];
        snprintf(what, sizeof what, "status code %d equals %d", codes[k], -k);
        check(codes[k] == -k, what); /* dense, never renumbered */
        const char *s = pcgrad_status_str(codes[k]);
        snprintf(what, sizeof what, "status_str(%d) is a known, non-empty string", codes[k]);
        check(s != NULL && s[0] != '\0' && strcmp(s, unknown) != 0, what);
        for (int j = 0; j < k; j++) {
            snprintf(what, sizeof what, "status_str(%d) != status_str(%d)", codes[k], codes[j]);
            check(strcmp(s, pcgrad_status_str(codes[j])) != 0, what);
        }
        /* PCGRAD_ERROR_UNSUPPORTED comes only from a library built without
         * a feature (the diagnostic matrix without `diagnostics`, as in the
         * bare-metal build; the Rust tests check that refusal); this host
         * library has every feature. */
        if (k > 0 && codes[k] != PCGRAD_ERROR_UNSUPPORTED) {
            snprintf(what, sizeof what, "status %d reached by a real bad input", codes[k]);
            check(code_seen[k] > 0, what);
        }
    }

    char v[64];
    snprintf(v, sizeof v, "%d.%d.%d", PCGRAD_VERSION_MAJOR, PCGRAD_VERSION_MINOR, PCGRAD_VERSION_PATCH);
    check(strcmp(v, PCGRAD_VERSION_STRING) == 0, "version macros agree with PCGRAD_VERSION_STRING");
    check(pcgrad_version() != NULL && strcmp(pcgrad_version(), PCGRAD_VERSION_STRING) == 0,
          "pcgrad_version() = PCGRAD_VERSION_STRING");
}

/* ------------------------------------------------------------------ */
/* Successful calls against hand-computed results. */

static int near(double a, double b) {
    return fabs(a - b) <= 1e-6 * (1.0 + fabs(b));
}

static void successes(void) {
    /* workspace sizes against their formulas */
    for (size_t t = 1; t <= 16; t++) {
        size_t w = 0, wv = 0;
        check(pcgrad_workspace_len(t, &w) == PCGRAD_OK && w == 3 * t * t + 34 * t + 32,
              "workspace_len = 3 T^2 + 34 T + 32");
        for (size_t s = 0; s <= 9; s++)
            check(pcgrad_workspace_len_vars(t, s, &wv) == PCGRAD_OK &&
                      wv == w + 2 * t * s + (t * s + 7) / 8 + 2 * s,
                  "workspace_len_vars = workspace_len + 2 T S + ceil(T S / 8) + 2 S");
    }

    /* two 2-D gradients at 135 degrees: g0 = (1, 0), g1 = (-1, 1).
     * g0.g1 = -1, |g0|^2 = 1, |g1|^2 = 2.
     * g0' = g0 + g1/2 = (0.5, 0.5); g1' = g1 + g0 = (0, 1). */
    double ws[256];
    float g[4] = {1.0f, 0.0f, -1.0f, 1.0f};
    float m[2];
    double mx[4];
    pcgrad_stats st;
    pcgrad_config c;
    pcgrad_rng rng = {7};
    for (int mode = 0; mode <= 1; mode++)
        for (int red = 0; red <= 1; red++) {
            memset(&c, 0, sizeof c);
            c.mode = (uint32_t)mode;
            c.reduction = (uint32_t)red;
            c.matrix = PCGRAD_MATRIX_GRAM;
            check(pcgrad_merge_flat(&c, g, 4, NULL, 0, NULL, 0, 2, 2, m, 2, &st, mx, 4, ws, 256) == PCGRAD_OK,
                  "2-D: merge_flat OK");
            double k = red == PCGRAD_REDUCTION_MEAN ? 0.5 : 1.0;
            check(m[0] == (float)(k * 0.5) && m[1] == (float)(k * 1.5), "2-D: merged = k (0.5, 1.5) exactly");
            check(st.conflicting_pairs == 1 && st.projections == 2, "2-D: 1 conflicting pair, 2 projections");
            check(mx[0] == 1.0 && mx[1] == -1.0 && mx[2] == -1.0 && mx[3] == 2.0, "2-D: Gram matrix");
        }
    /* in place, with the cosine matrix */
    memset(&c, 0, sizeof c);
    c.matrix = PCGRAD_MATRIX_COSINE;
    check(pcgrad_project_flat(&c, g, 4, NULL, 0, NULL, 0, 2, 2, m, 2, NULL, mx, 4, ws, 256) == PCGRAD_OK,
          "2-D: project_flat OK");
    check(g[0] == 0.5f && g[1] == 0.5f && g[2] == 0.0f && g[3] == 1.0f, "2-D: projected rows in place");
    check(m[0] == 0.25f && m[1] == 0.75f, "2-D: merged (mean) with the in-place call");
    check(near(mx[1], -1.0 / sqrt(2.0)) && near(mx[2], -1.0 / sqrt(2.0)) && near(mx[0], 1.0) && near(mx[3], 1.0),
          "2-D: cosine matrix");

    /* near the top of the float range (an independent client's reproducer):
     * rows (3e38, 1e37) and (-3e38, 1e37) merge to exactly (0, 3.99556e37)
     * under the sum, and (2e38), (-2e38) to (0), in both modes and through
     * both calls, never inf or NaN. */
    {
        for (int mode = 0; mode <= 1; mode++)
            for (int path = 0; path <= 1; path++) {
                float big[4] = {3e38f, 1e37f, -3e38f, 1e37f};
                float one[2] = {2e38f, -2e38f};
                float mb[2] = {1.0f, 1.0f}, m1[1] = {1.0f};
                memset(&c, 0, sizeof c);
                c.mode = (uint32_t)mode;
                c.reduction = PCGRAD_REDUCTION_SUM;
                pcgrad_status s1 = path == 0
                    ? pcgrad_merge_flat(&c, big, 4, NULL, 0, NULL, 0, 2, 2, mb, 2, NULL, NULL, 0, ws, 256)
                    : pcgrad_project_flat(&c, big, 4, NULL, 0, NULL, 0, 2, 2, mb, 2, NULL, NULL, 0, ws, 256);
                pcgrad_status s2 = path == 0
                    ? pcgrad_merge_flat(&c, one, 2, NULL, 0, NULL, 0, 2, 1, m1, 1, NULL, NULL, 0, ws, 256)
                    : pcgrad_project_flat(&c, one, 2, NULL, 0, NULL, 0, 2, 1, m1, 1, NULL, NULL, 0, ws, 256);
                check(s1 == PCGRAD_OK && mb[0] == 0.0f && fabs(mb[1] - 3.99556e37) <= 1e-5 * 3.99556e37,
                      "near max: (3e38, 1e37), (-3e38, 1e37) merge to (0, 3.99556e37)");
                check(s2 == PCGRAD_OK && m1[0] == 0.0f, "near max: (2e38), (-2e38) merge to (0)");
            }
    }

    /* no conflict: g0 = (1, 1), g1 = (1, 0): untouched, merged = mean */
    {
        float h[4] = {1.0f, 1.0f, 1.0f, 0.0f};
        memset(&c, 0, sizeof c);
        check(pcgrad_merge_flat(&c, h, 4, NULL, 0, NULL, 0, 2, 2, m, 2, &st, NULL, 0, ws, 256) == PCGRAD_OK &&
                  m[0] == 1.0f && m[1] == 0.5f && st.conflicting_pairs == 0 && st.projections == 0,
              "2-D: no conflict, plain mean");
    }

    /* sequential order matters with three tasks: g0 = (1, 0), g1 = (-1, 1),
     * g2 = (-1, -1). Task 0 visiting 1 then 2: p = (1,0) + (-1,1)/2 =
     * (0.5, 0.5); p.g2 = -1 -> p + (-1,-1)/2 = (0, 0). Visiting 2 then 1:
     * p = (1,0) + (-1,-1)/2 = (0.5, -0.5); p.g1 = -1 -> (0, 0) as well, so
     * look at task 1 instead: g1 visiting 0 then 2: p = (-1,1) + (1,0) =
     * (0, 1); p.g2 = -1 -> (0,1) + (-1,-1)/2 = (-0.5, 0.5). Visiting 2 then
     * 0: p.g2 = 0, no projection; p.g0 = -1 -> (0, 1). */
    {
        float h[6] = {1.0f, 0.0f, -1.0f, 1.0f, -1.0f, -1.0f};
        uint32_t ta[6] = {1, 2, 0, 2, 0, 1}; /* ascending */
        uint32_t tb[6] = {2, 1, 2, 0, 1, 0}; /* descending */
        float pa[6], pb[6];
        memcpy(pa, h, sizeof h);
        memcpy(pb, h, sizeof h);
        memset(&c, 0, sizeof c);
        c.order = PCGRAD_ORDER_EXPLICIT;
        c.order_table = ta;
        c.order_table_len = 6;
        check(pcgrad_project_flat(&c, pa, 6, NULL, 0, NULL, 0, 3, 2, NULL, 0, NULL, NULL, 0, ws, 256) == PCGRAD_OK,
              "3 tasks: explicit ascending OK");
        c.order_table = tb;
        check(pcgrad_project_flat(&c, pb, 6, NULL, 0, NULL, 0, 3, 2, NULL, 0, NULL, NULL, 0, ws, 256) == PCGRAD_OK,
              "3 tasks: explicit descending OK");
        check(pa[0] == 0.0f && pa[1] == 0.0f && pa[2] == -0.5f && pa[3] == 0.5f, "3 tasks: ascending order, tasks 0 and 1");
        check(pb[0] == 0.0f && pb[1] == 0.0f && pb[2] == 0.0f && pb[3] == 1.0f, "3 tasks: descending order, tasks 0 and 1");
        /* fixed order = ascending table */
        float pf[6];
        memcpy(pf, h, sizeof h);
        memset(&c, 0, sizeof c);
        check(pcgrad_project_flat(&c, pf, 6, NULL, 0, NULL, 0, 3, 2, NULL, 0, NULL, NULL, 0, ws, 256) == PCGRAD_OK &&
                  memcmp(pf, pa, sizeof pf) == 0,
              "3 tasks: fixed order = explicit ascending table");
        /* shuffled: a saved PRNG state replays the call exactly */
        float s1[6], s2[6];
        memcpy(s1, h, sizeof h);
        memcpy(s2, h, sizeof h);
        c.order = PCGRAD_ORDER_SHUFFLED;
        c.rng = &rng;
        pcgrad_rng saved = rng;
        check(pcgrad_project_flat(&c, s1, 6, NULL, 0, NULL, 0, 3, 2, NULL, 0, NULL, NULL, 0, ws, 256) == PCGRAD_OK,
              "3 tasks: shuffled OK");
        check(rng.state != saved.state, "3 tasks: shuffled advances the PRNG");
        rng = saved;
        check(pcgrad_project_flat(&c, s2, 6, NULL, 0, NULL, 0, 3, 2, NULL, 0, NULL, NULL, 0, ws, 256) == PCGRAD_OK &&
                  memcmp(s1, s2, sizeof s1) == 0,
              "3 tasks: a saved PRNG state replays the draw");
    }

    /* per variable with task-specific heads: shared (2), head0 (1), head1 (1).
     * g0 = (1, 0 | 3 | -), g1 = (-1, 1 | - | 5). As flat vectors
     * g0 = (1,0,3,0), g1 = (-1,1,0,5): g0.g1 = -1, |g0|^2 = 10, |g1|^2 = 27.
     * g0' = g0 + g1/27, g1' = g1 + g0/10. Merged: mean on the shared pair,
     * sum on the heads. */
    {
        float sh0[2] = {1.0f, 0.0f}, sh1[2] = {-1.0f, 1.0f}, h0[1] = {3.0f}, h1[1] = {5.0f};
        const float *tab[6] = {sh0, h0, NULL, sh1, NULL, h1};
        size_t segs[3] = {2, 1, 1};
        float ms[2], mh0[1], mh1[1];
        float *outs[3] = {ms, mh0, mh1};
        size_t wl = 0;
        check(pcgrad_workspace_len_vars(2, 3, &wl) == PCGRAD_OK && wl <= 256, "vars: workspace fits");
        memset(&c, 0, sizeof c);
        check(pcgrad_merge_vars(&c, tab, 6, segs, 3, 2, outs, 3, &st, NULL, 0, ws, wl) == PCGRAD_OK,
              "vars: merge_vars OK");
        double g0[4] = {1, 0, 3, 0}, g1[4] = {-1, 1, 0, 5}, p0[4], p1[4];
        for (int k = 0; k < 4; k++) {
            p0[k] = g0[k] + g1[k] / 27.0;
            p1[k] = g1[k] + g0[k] / 10.0;
        }
        check(near(ms[0], (p0[0] + p1[0]) / 2) && near(ms[1], (p0[1] + p1[1]) / 2), "vars: shared mean");
        check(near(mh0[0], p0[2] + p1[2]) && near(mh1[0], p0[3] + p1[3]), "vars: heads summed (3.3, 5 + 5/27)");
        check(st.conflicting_pairs == 1 && st.projections == 2, "vars: stats");

        /* the same through pack + merge_flat, then unflatten */
        float flat[8], mflat[4], us[2], u0[1], u1[1];
        float *uouts[3] = {us, u0, u1};
        uint8_t has[6];
        check(pcgrad_pack(tab, 6, segs, 3, 2, flat, 8, has, 6) == PCGRAD_OK, "vars: pack OK");
        check(has[0] == 1 && has[1] == 1 && has[2] == 0 && has[3] == 1 && has[4] == 0 && has[5] == 1,
              "vars: pack has_grad");
        check(flat[3] == 0.0f && flat[6] == 0.0f && flat[2] == 3.0f && flat[7] == 5.0f, "vars: pack zeros");
        check(pcgrad_merge_flat(&c, flat, 8, segs, 3, has, 6, 2, 4, mflat, 4, NULL, NULL, 0, ws, 256) == PCGRAD_OK,
              "vars: merge_flat of the packed buffer OK");
        check(pcgrad_unflatten(mflat, 4, segs, 3, uouts, 3) == PCGRAD_OK, "vars: unflatten OK");
        check(memcmp(us, ms, sizeof us) == 0 && u0[0] == mh0[0] && u1[0] == mh1[0],
              "vars: per-variable = pack + flat + unflatten, bitwise");
    }

    /* the three phases give the one-call result */
    {
        float h[6] = {1.0f, 0.0f, 2.0f, -1.0f, 1.0f, 0.0f};
        double gram[8] = {0}, part[8] = {0}, coef[8], tile[96];
        float one[3], ph[3];
        size_t cl = 0, tl = 0;
        memset(&c, 0, sizeof c);
        check(pcgrad_merge_flat(&c, h, 6, NULL, 0, NULL, 0, 2, 3, one, 3, NULL, NULL, 0, ws, 256) == PCGRAD_OK,
              "phases: one call OK");
        check(pcgrad_gram_flat(h, 6, NULL, 0, NULL, 0, 2, 3, 0, 1, gram, 8) == PCGRAD_OK &&
                  pcgrad_gram_flat(h, 6, NULL, 0, NULL, 0, 2, 3, 1, 3, part, 8) == PCGRAD_OK &&
                  pcgrad_gram_combine(part, 4, 2, gram, 4) == PCGRAD_OK,
              "phases: two partial Grams combined");
        check(gram[0] == 5.0 && gram[1] == -1.0 && gram[2] == -1.0 && gram[3] == 2.0, "phases: Gram [[5,-1],[-1,2]]");
        check(pcgrad_coefficients_len(2, &cl) == PCGRAD_OK && cl <= 8 && pcgrad_tile_len(2, &tl) == PCGRAD_OK &&
                  tl <= 96,
              "phases: sizes");
        check(pcgrad_coefficients(&c, gram, 4, 2, NULL, coef, cl) == PCGRAD_OK, "phases: coefficients OK");
        check(pcgrad_apply_merged_flat(h, 6, NULL, 0, NULL, 0, coef, cl, 2, 3, PCGRAD_REDUCTION_MEAN, 0, 2, ph, 2,
                                       tile, tl) == PCGRAD_OK &&
                  pcgrad_apply_merged_flat(h, 6, NULL, 0, NULL, 0, coef, cl, 2, 3, PCGRAD_REDUCTION_MEAN, 2, 3,
                                           ph + 2, 1, tile, tl) == PCGRAD_OK,
              "phases: apply in two ranges OK");
        check(near(ph[0], -0.15) && near(ph[1], 0.75) && near(ph[2], 1.2), "phases: merged (-0.15, 0.75, 1.2)");
        check(near(one[0], ph[0]) && near(one[1], ph[1]) && near(one[2], ph[2]), "phases: = one call");
    }
}

/* ------------------------------------------------------------------ */
/* The double-gradient flat calls: results against the float calls, and
 * refusals that leave every caller buffer but the workspace untouched. */

static void f64_flat(void) {
    reset();
    double g[T * N + PAD], merged[N + PAD], g0[T * N + PAD], m0[N + PAD], mf[N + PAD];
    for (int k = 0; k < T * N + PAD; k++) g[k] = k < T * N ? (double)F.grads[k] : 42.0;
    for (int k = 0; k < N + PAD; k++) merged[k] = -777.0;
    memcpy(g0, g, sizeof g);
    memcpy(m0, merged, sizeof merged);
    size_t wsl = ws_flat();
    pcgrad_stats st;

    /* The float result on the same data. */
    EXPECT("merge_flat (float reference)", PCGRAD_OK,
           pcgrad_merge_flat(&F.cfg, F.grads, T * N, F.segs, S, F.has, T * S, T, N, F.merged, N,
                             NULL, NULL, 0, WS, wsl));
    for (int k = 0; k < N; k++) mf[k] = (double)F.merged[k];

    pcgrad_status s = pcgrad_merge_flat_f64(&F.cfg, g, T * N, F.segs, S, F.has, T * S, T, N,
                                            merged, N, &st, NULL, 0, WS, wsl);
    expect("merge_flat_f64 valid", PCGRAD_OK, s);
    int close = 1;
    for (int k = 0; k < N; k++) close &= fabs(merged[k] - mf[k]) <= 1e-6 * (1.0 + fabs(mf[k]));
    check(close, "merge_flat_f64 equals merge_flat within float rounding");
    check(memcmp(g, g0, sizeof g) == 0, "merge_flat_f64 leaves the gradients alone");
    check(st.conflicting_pairs >= 1, "merge_flat_f64 sees the conflict");

    /* Project in place: its merged output is the merge result, bitwise. */
    double pm[N];
    s = pcgrad_project_flat_f64(&F.cfg, g, T * N, F.segs, S, F.has, T * S, T, N, pm, N, NULL,
                                NULL, 0, WS, wsl);
    expect("project_flat_f64 valid", PCGRAD_OK, s);
    check(memcmp(pm, merged, sizeof pm) == 0, "project_flat_f64 merged equals merge_flat_f64");
    check(memcmp(g, g0, sizeof g) != 0, "project_flat_f64 writes the gradients in place");

    /* Refusals. */
    struct {
        const char *what;
        pcgrad_status want;
        const double *g;
        size_t gl;
        double *m;
    } bad[] = {
        {"f64 grads NULL", PCGRAD_ERROR_NULL_POINTER, NULL, T * N, m0},
        {"f64 grads misaligned", PCGRAD_ERROR_MISALIGNED, (const double *)shift(g0, 4), T * N, m0},
        {"f64 merged misaligned", PCGRAD_ERROR_MISALIGNED, g0, T * N, (double *)shift(m0, 4)},
        {"f64 grads_len = T*N - 1", PCGRAD_ERROR_LENGTH_MISMATCH, g0, T * N - 1, m0},
        {"f64 merged over grads", PCGRAD_ERROR_OVERLAP, g0, T * N, g0 + 3},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        double gs[T * N + PAD], ms[N + PAD];
        memcpy(gs, g0, sizeof gs);
        memcpy(ms, m0, sizeof ms);
        memcpy(&SNAP, &F, sizeof F);
        s = pcgrad_merge_flat_f64(&F.cfg, bad[i].g, bad[i].gl, F.segs, S, F.has, T * S, T, N,
                                  bad[i].m, N, NULL, NULL, 0, WS, wsl);
        expect(bad[i].what, bad[i].want, s);
        check(memcmp(gs, g0, sizeof gs) == 0 && memcmp(ms, m0, sizeof ms) == 0,
              "a refused _f64 call wrote a caller buffer");
        double *pg = (double *)(uintptr_t)bad[i].g;
        memcpy(&SNAP, &F, sizeof F);
        s = pcgrad_project_flat_f64(&F.cfg, pg, bad[i].gl, F.segs, S, F.has, T * S, T, N,
                                    bad[i].m, N, NULL, NULL, 0, WS, wsl);
        expect(bad[i].what, bad[i].want, s);
        check(memcmp(gs, g0, sizeof gs) == 0 && memcmp(ms, m0, sizeof ms) == 0,
              "a refused _f64 call wrote a caller buffer");
    }
}

int main(void) {
    flat_errors("merge_flat", merge_flat);
    flat_errors("project_flat", project_flat);
    project_flat_errors();
    f64_flat();
    vars_errors();
    sizes_and_phases();
    method_errors();
    strings(); /* after the others: every code must have been reached */
    successes();
    printf("status_test: %d checks passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
