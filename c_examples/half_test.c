/* The bf16 and f16 entry points from C: pcgrad_merge_flat_bf16/_f16,
 * pcgrad_merge_flat_bf16_f32/_f16_f32 (float output) and
 * pcgrad_project_flat_bf16/_f16 on conformance vectors rounded to each
 * format (half_vectors.inc, generated and checked by tests/conformance.rs),
 * against the float64 reference of the rounded input, within the tolerance
 * derived there: per element (u + 2^-23) |want| + 2e-5 max|input| + eta,
 * u = 2^-8 (bf16) or 2^-11 (f16), eta half the smallest subnormal step;
 * for the float output 2^-23 |want| + 2e-5 max|input| + 2^-149. The float
 * output y and the half output h of the same call differ by one rounding
 * of the same double sum: bf16 h is y rounded to nearest even (bitwise)
 * unless y is a bf16 midpoint, and |h - y| <= (u + 2^-23) |y| + eta for
 * both. Then refusals that must leave every caller buffer untouched.
 *
 * Prints one line per case and format; exits 1 on any mismatch. */
#include <pcgrad.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

struct half_data {
    const uint16_t *grads;
    const double *merged;
    const double *projected;
};

struct half_case {
    const char *name;
    size_t tasks, dim;
    uint32_t mode, order, reduction;
    const size_t *segs;
    size_t segs_len;
    const uint8_t *has_grad;
    size_t has_grad_len;
    const uint32_t *order_table;
    size_t order_table_len;
    struct half_data fmt[2]; /* bf16, f16 */
};

#include "half_vectors.inc"

enum { MAXT = 8, MAXN = 96, WS = 4096 };

static double from_bf16(uint16_t h) {
    uint32_t b = (uint32_t)h << 16;
    float f;
    memcpy(&f, &b, sizeof f);
    return (double)f;
}

static double from_f16(uint16_t h) {
    int e = (h >> 10) & 0x1F;
    double m = (double)(h & 0x3FF);
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(m + 1024.0, e - 25);
    return (h & 0x8000) ? -v : v;
}

typedef enum pcgrad_status (*merge_fn)(const struct pcgrad_config *, const uint16_t *, size_t,
                                       const size_t *, size_t, const uint8_t *, size_t, size_t,
                                       size_t, uint16_t *, size_t, struct pcgrad_stats *,
                                       double *, size_t, double *, size_t);
typedef enum pcgrad_status (*project_fn)(const struct pcgrad_config *, uint16_t *, size_t,
                                         const size_t *, size_t, const uint8_t *, size_t, size_t,
                                         size_t, uint16_t *, size_t, struct pcgrad_stats *,
                                         double *, size_t, double *, size_t);

typedef enum pcgrad_status (*merge_f32_fn)(const struct pcgrad_config *, const uint16_t *, size_t,
                                           const size_t *, size_t, const uint8_t *, size_t,
                                           size_t, size_t, float *, size_t,
                                           struct pcgrad_stats *, double *, size_t, double *,
                                           size_t);

struct format {
    const char *name;
    double unit, eta;
    double (*decode)(uint16_t);
    merge_fn merge;
    project_fn project;
    merge_f32_fn merge_f32;
};

static const struct format FORMATS[2] = {
    {"bf16", 0x1p-8, 0x1p-134, from_bf16, pcgrad_merge_flat_bf16, pcgrad_project_flat_bf16,
     pcgrad_merge_flat_bf16_f32},
    {"f16", 0x1p-11, 0x1p-25, from_f16, pcgrad_merge_flat_f16, pcgrad_project_flat_f16,
     pcgrad_merge_flat_f16_f32},
};

static double ws[WS];

/* Counts the elements of got (n half values) outside the tolerance of
 * want; *worst is the largest error as a fraction of its tolerance. */
static int compare(const struct format *f, const uint16_t *got, const double *want, size_t n,
                   double scale, double *worst) {
    int bad = 0;
    for (size_t k = 0; k < n; k++) {
        double g = f->decode(got[k]), w = want[k];
        double tol = (f->unit + 0x1p-23) * fabs(w) + 2e-5 * scale + f->eta;
        double e = fabs(g - w);
        if (g != w && !(e <= tol)) {
            if (bad++ < 3)
                fprintf(stderr, "  [%zu]: got %.9g, want %.17g (tolerance %.3g)\n", k, g, w, tol);
        }
        if (g == g && e / tol > *worst)
            *worst = e / tol;
    }
    return bad;
}

static struct pcgrad_config config_of(const struct half_case *c) {
    struct pcgrad_config cfg;
    pcgrad_config_default(&cfg);
    cfg.mode = c->mode;
    cfg.order = c->order;
    cfg.reduction = c->reduction;
    cfg.order_table = c->order_table;
    cfg.order_table_len = c->order_table_len;
    return cfg;
}

static int run_case(const struct half_case *c, const struct format *f, const struct half_data *d) {
    size_t tn = c->tasks * c->dim, need = 0;
    if (c->tasks > MAXT || c->dim > MAXN || pcgrad_workspace_len(c->tasks, &need) != PCGRAD_OK ||
        need > WS) {
        fprintf(stderr, "FAIL: %s: shape or workspace\n", c->name);
        return 1;
    }
    struct pcgrad_config cfg = config_of(c);
    double scale = 0.0, worst = 0.0;
    for (size_t k = 0; k < tn; k++)
        scale = fmax(scale, fabs(f->decode(d->grads[k])));
    uint16_t merged[MAXN], merged2[MAXN], g[MAXT * MAXN];
    struct pcgrad_stats st, st2;
    int bad = 0;
    enum pcgrad_status s = f->merge(&cfg, d->grads, tn, c->segs, c->segs_len, c->has_grad,
                                    c->has_grad_len, c->tasks, c->dim, merged, c->dim, &st, NULL,
                                    0, ws, WS);
    if (s != PCGRAD_OK) {
        fprintf(stderr, "FAIL: %s %s merge: %s\n", c->name, f->name, pcgrad_status_str(s));
        return 1;
    }
    bad += compare(f, merged, d->merged, c->dim, scale, &worst);
    /* In place: the projected gradients over the input, and the merged
     * output, bitwise the merge call's. */
    memcpy(g, d->grads, tn * sizeof g[0]);
    s = f->project(&cfg, g, tn, c->segs, c->segs_len, c->has_grad, c->has_grad_len, c->tasks,
                   c->dim, merged2, c->dim, &st2, NULL, 0, ws, WS);
    if (s != PCGRAD_OK) {
        fprintf(stderr, "FAIL: %s %s project: %s\n", c->name, f->name, pcgrad_status_str(s));
        return 1;
    }
    bad += compare(f, g, d->projected, tn, scale, &worst);
    if (memcmp(merged, merged2, c->dim * sizeof merged[0]) != 0 ||
        st.conflicting_pairs != st2.conflicting_pairs || st.projections != st2.projections) {
        fprintf(stderr, "  project's merged output or stats differ from merge's\n");
        bad++;
    }
    /* The float output: the same double sums, rounded once to float. */
    float y[MAXN];
    struct pcgrad_stats st3;
    s = f->merge_f32(&cfg, d->grads, tn, c->segs, c->segs_len, c->has_grad, c->has_grad_len,
                     c->tasks, c->dim, y, c->dim, &st3, NULL, 0, ws, WS);
    if (s != PCGRAD_OK) {
        fprintf(stderr, "FAIL: %s %s merge_f32: %s\n", c->name, f->name, pcgrad_status_str(s));
        return 1;
    }
    if (st.conflicting_pairs != st3.conflicting_pairs || st.projections != st3.projections) {
        fprintf(stderr, "  merge_f32's stats differ from merge's\n");
        bad++;
    }
    for (size_t k = 0; k < c->dim; k++) {
        double w = d->merged[k], g = (double)y[k], h = f->decode(merged[k]);
        double tol = 0x1p-23 * fabs(w) + 2e-5 * scale + 0x1p-149;
        if (g != w && !(fabs(g - w) <= tol)) {
            if (bad++ < 3)
                fprintf(stderr, "  f32 [%zu]: got %.9g, want %.17g (tolerance %.3g)\n", k, g, w,
                        tol);
        }
        if (g == g && fabs(g - w) / tol > worst)
            worst = fabs(g - w) / tol;
        if (!(fabs(h - g) <= (f->unit + 0x1p-23) * fabs(g) + f->eta) && !(h != h && g != g)) {
            if (bad++ < 3)
                fprintf(stderr, "  f32 [%zu]: %.9g vs the half output %.9g\n", k, g, h);
        }
        if (f->decode == from_bf16) {
            uint32_t b;
            memcpy(&b, &y[k], sizeof b);
            uint16_t r = (uint16_t)((b + 0x7FFFu + ((b >> 16) & 1u)) >> 16);
            if ((b & 0xFFFFu) != 0x8000u && g == g && r != merged[k]) {
                if (bad++ < 3)
                    fprintf(stderr, "  f32 [%zu]: %.9g rounds to 0x%04x, not 0x%04x\n", k, g,
                            (unsigned)r, (unsigned)merged[k]);
            }
        }
    }
    printf("%s %-4s: %zu merged (and as float), %zu projected values; largest error %.3f of the "
           "tolerance\n",
           bad ? "FAIL" : "ok  ", f->name, c->dim, tn, worst);
    return bad != 0;
}

/* Refusals of the float-output call: the statuses of the half one, and
 * nothing written (the half input lives in float storage so that the
 * overlap case is aligned). */
static int refusals_f32(const struct format *f) {
    const struct half_case *c = &CASES[0];
    struct pcgrad_config cfg = config_of(c), bad_cfg = cfg;
    bad_cfg.mode = 99;
    size_t tn = c->tasks * c->dim;
    static float store[(MAXT * MAXN) / 2 + 1], store_before[(MAXT * MAXN) / 2 + 1];
    float merged[MAXN + 1], before[MAXN + 1];
    static double ws2[WS], ws2_before[WS];
    int bad = 0;
    memset(store, 0, sizeof store);
    memcpy(store, f == &FORMATS[0] ? c->fmt[0].grads : c->fmt[1].grads, tn * sizeof(uint16_t));
    memcpy(store_before, store, sizeof store);
    const uint16_t *g = (const uint16_t *)(const void *)store;
    for (size_t k = 0; k <= MAXN; k++)
        merged[k] = (float)k + 0.5f;
    memcpy(before, merged, sizeof merged);
    for (size_t k = 0; k < WS; k++)
        ws2[k] = -1.0 - (double)k;
    memcpy(ws2_before, ws2, sizeof ws2);
    struct {
        const char *what;
        enum pcgrad_status want, got;
    } r[6];
    r[0].what = "NULL merged";
    r[0].want = PCGRAD_ERROR_NULL_POINTER;
    r[0].got = f->merge_f32(&cfg, g, tn, c->segs, c->segs_len, c->has_grad, c->has_grad_len,
                            c->tasks, c->dim, NULL, c->dim, NULL, NULL, 0, ws2, WS);
    r[1].what = "misaligned merged";
    r[1].want = PCGRAD_ERROR_MISALIGNED;
    r[1].got = f->merge_f32(&cfg, g, tn, c->segs, c->segs_len, c->has_grad, c->has_grad_len,
                            c->tasks, c->dim, (float *)(void *)((char *)merged + 2), c->dim, NULL,
                            NULL, 0, ws2, WS);
    r[2].what = "float merged overlapping the half grads";
    r[2].want = PCGRAD_ERROR_OVERLAP;
    r[2].got = f->merge_f32(&cfg, g, tn, c->segs, c->segs_len, c->has_grad, c->has_grad_len,
                            c->tasks, c->dim, store, c->dim, NULL, NULL, 0, ws2, WS);
    r[3].what = "merged_len = N - 1";
    r[3].want = PCGRAD_ERROR_LENGTH_MISMATCH;
    r[3].got = f->merge_f32(&cfg, g, tn, c->segs, c->segs_len, c->has_grad, c->has_grad_len,
                            c->tasks, c->dim, merged, c->dim - 1, NULL, NULL, 0, ws2, WS);
    r[4].what = "invalid mode";
    r[4].want = PCGRAD_ERROR_INVALID_ENUM;
    r[4].got = f->merge_f32(&bad_cfg, g, tn, c->segs, c->segs_len, c->has_grad, c->has_grad_len,
                            c->tasks, c->dim, merged, c->dim, NULL, NULL, 0, ws2, WS);
    r[5].what = "workspace too small";
    r[5].want = PCGRAD_ERROR_WORKSPACE_TOO_SMALL;
    r[5].got = f->merge_f32(&cfg, g, tn, c->segs, c->segs_len, c->has_grad, c->has_grad_len,
                            c->tasks, c->dim, merged, c->dim, NULL, NULL, 0, ws2, 1);
    for (int k = 0; k < 6; k++) {
        if (r[k].got != r[k].want) {
            fprintf(stderr, "FAIL: %s_f32 %s: got %s, want %s\n", f->name, r[k].what,
                    pcgrad_status_str(r[k].got), pcgrad_status_str(r[k].want));
            bad++;
        }
    }
    if (memcmp(store, store_before, sizeof store) != 0 ||
        memcmp(merged, before, sizeof merged) != 0 || memcmp(ws2, ws2_before, sizeof ws2) != 0) {
        fprintf(stderr, "FAIL: %s_f32: a refused call wrote a caller buffer\n", f->name);
        bad++;
    }
    printf("%s %-4s: 6 float-output refusals, no buffer written\n", bad ? "FAIL" : "ok  ",
           f->name);
    return bad;
}

/* Refusals: the same statuses as the float calls, and nothing written. */
static int refusals(const struct format *f) {
    const struct half_case *c = &CASES[0];
    struct pcgrad_config cfg = config_of(c);
    size_t tn = c->tasks * c->dim;
    uint16_t buf[1 + MAXT * MAXN], merged[MAXN + 1], before[MAXN + 1];
    int bad = 0;
    memcpy(buf, c->fmt[0].grads, tn * sizeof buf[0]);
    for (size_t k = 0; k <= MAXN; k++)
        merged[k] = (uint16_t)(0xA5A5u + k);
    memcpy(before, merged, sizeof merged);
    struct {
        const char *what;
        enum pcgrad_status want, got;
    } r[5];
    r[0].what = "grads_len = T * N - 1";
    r[0].want = PCGRAD_ERROR_LENGTH_MISMATCH;
    r[0].got = f->merge(&cfg, buf, tn - 1, c->segs, c->segs_len, c->has_grad, c->has_grad_len,
                        c->tasks, c->dim, merged, c->dim, NULL, NULL, 0, ws, WS);
    r[1].what = "misaligned grads";
    r[1].want = PCGRAD_ERROR_MISALIGNED;
    r[1].got = f->merge(&cfg, (const uint16_t *)((const char *)buf + 1), tn, c->segs, c->segs_len,
                        c->has_grad, c->has_grad_len, c->tasks, c->dim, merged, c->dim, NULL, NULL,
                        0, ws, WS);
    r[2].what = "NULL merged";
    r[2].want = PCGRAD_ERROR_NULL_POINTER;
    r[2].got = f->merge(&cfg, buf, tn, c->segs, c->segs_len, c->has_grad, c->has_grad_len,
                        c->tasks, c->dim, NULL, c->dim, NULL, NULL, 0, ws, WS);
    r[3].what = "merged overlapping grads (project)";
    r[3].want = PCGRAD_ERROR_OVERLAP;
    r[3].got = f->project(&cfg, buf, tn, c->segs, c->segs_len, c->has_grad, c->has_grad_len,
                          c->tasks, c->dim, buf + 1, c->dim, NULL, NULL, 0, ws, WS);
    r[4].what = "workspace too small (project)";
    r[4].want = PCGRAD_ERROR_WORKSPACE_TOO_SMALL;
    r[4].got = f->project(&cfg, buf, tn, c->segs, c->segs_len, c->has_grad, c->has_grad_len,
                          c->tasks, c->dim, merged, c->dim, NULL, NULL, 0, ws, 1);
    for (int k = 0; k < 5; k++) {
        if (r[k].got != r[k].want) {
            fprintf(stderr, "FAIL: %s %s: got %s, want %s\n", f->name, r[k].what,
                    pcgrad_status_str(r[k].got), pcgrad_status_str(r[k].want));
            bad++;
        }
    }
    if (memcmp(buf, c->fmt[0].grads, tn * sizeof buf[0]) != 0 ||
        memcmp(merged, before, sizeof merged) != 0) {
        fprintf(stderr, "FAIL: %s: a refused call wrote a caller buffer\n", f->name);
        bad++;
    }
    printf("%s %-4s: 5 refusals, no buffer written\n", bad ? "FAIL" : "ok  ", f->name);
    return bad;
}

int main(void) {
    int failed = 0;
    for (int k = 0; k < HALF_CASES; k++) {
        printf("%s\n", CASES[k].name);
        for (int f = 0; f < 2; f++)
            failed += run_case(&CASES[k], &FORMATS[f], &CASES[k].fmt[f]);
    }
    for (int f = 0; f < 2; f++)
        failed += refusals(&FORMATS[f]) + refusals_f32(&FORMATS[f]);
    if (failed) {
        fprintf(stderr, "half_test: %d failures\n", failed);
        return 1;
    }
    printf("half_test: all passed\n");
    return 0;
}
