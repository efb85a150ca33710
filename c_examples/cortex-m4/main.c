/* On-device multi-task learning on a Cortex-M4F with PCGrad every step, in C
 * over the library's C ABI (include/pcgrad.h, libpcgrad.a).
 *
 * The same problem as the Rust firmware (examples/cortex-m4): a tiny network
 * (shared softsign trunk, one linear head per task) learns three regression
 * tasks whose gradients conflict, from data it draws itself. Parameters, the
 * T x N task gradients, the merged gradient and the library's workspace are
 * static arrays; there is no heap. Each step computes the per-task gradients
 * by hand, merges them with pcgrad_merge_flat (sequential, shuffled order,
 * caller-owned PRNG state, mean reduction over shared coordinates) and takes
 * an SGD step.
 *
 * Over semihosting it prints the per-task losses, the workspace the library
 * needs for several T and the stack high-water mark of one library call (the
 * region below the stack pointer is painted before each call and scanned
 * after it; bytes are counted from the stack pointer at the library call, so
 * the firmware's own frames are not included), and exits with status 1 if a task's loss does not fall, if no
 * gradient was ever projected or if the library returns an error.
 *
 * Built with -DPCGRAD_BASELINE the merge is a plain sum (the same reduction
 * rule, no projection) and no library function is referenced: the footprint
 * script diffs the section sizes of the two builds. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifndef PCGRAD_BASELINE
#include "pcgrad.h"
#endif
#include "semihost.h"

#define D 4                         /* inputs */
#define H 8                         /* shared hidden units */
#define T 3                         /* tasks */
#define S (2 + T)                   /* parameter segments */
#define N (H * D + H + T * (H + 1)) /* parameters, flattened */
#define WS_LEN (3 * T * T + 2 * T + 32 * (T + 1))
#define BATCH 8
#define STEPS 600
#define WINDOW 100
#define LR 0.1f
#define MAX_RATIO 0.5f
#define PAINT_BYTES 8192u
#define PATTERN 0xC0DE5EEDu

/* Trunk weights (H x D), trunk bias (H), one head per task (H + 1). */
static const size_t segments[S] = {H * D, H, H + 1, H + 1, H + 1};
#ifndef PCGRAD_BASELINE
/* Every task reaches the trunk; each head only its own task (T x S). */
static const uint8_t has_grad[T * S] = {
    1, 1, 1, 0, 0, /* task 0 */
    1, 1, 0, 1, 0, /* task 1 */
    1, 1, 0, 0, 1, /* task 2 */
};
#endif

static float params[N];
static float grads[T * N];
static float merged[N];
static double workspace[WS_LEN];

/* ---- the model --------------------------------------------------------- */

static uint32_t data_state = 0x12345678u;

/* Uniform in [-1, 1) from xorshift32 (the same stream as the Rust firmware). */
static float uniform(void) {
    uint32_t x = data_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    data_state = x;
    return (float)(x >> 8) * (2.0f / 16777216.0f) - 1.0f;
}

static float absf(float z) { return z < 0 ? -z : z; }
static float softsign(float z) { return z / (1.0f + absf(z)); }

static float dot(const float *a, const float *b) {
    float s = 0;
    for (int d = 0; d < D; d++) {
        s += a[d] * b[d];
    }
    return s;
}

/* Task 1 pulls against task 0 on the shared direction U; task 2 is on a
 * larger scale. */
static void targets(const float *x, float *y) {
    static const float U[D] = {0.6f, -0.5f, 0.4f, 0.5f};
    static const float V[D] = {0.5f, 0.5f, -0.5f, 0.5f};
    static const float W[D] = {-0.4f, 0.6f, 0.5f, 0.4f};
    float u = dot(U, x), v = dot(V, x), w = dot(W, x);
    y[0] = softsign(2.0f * u) + 0.5f * v;
    y[1] = -softsign(2.0f * u) + 0.5f * v + 0.3f * w;
    y[2] = 3.0f * softsign(u + w);
}

static size_t head(int t) { return H * D + H + (size_t)t * (H + 1); }

/* Fills grads (row t = task t's gradient of its mean batch loss) and adds
 * the per-task batch losses to loss[]. */
static void task_gradients(float *loss) {
    const float scale = 1.0f / BATCH;
    memset(grads, 0, sizeof grads);
    for (int b = 0; b < BATCH; b++) {
        float x[D], y[T], z[H], a[H];
        for (int d = 0; d < D; d++) {
            x[d] = uniform();
        }
        targets(x, y);
        for (int h = 0; h < H; h++) {
            z[h] = params[H * D + h] + dot(&params[h * D], x);
            a[h] = softsign(z[h]);
        }
        for (int t = 0; t < T; t++) {
            size_t hd = head(t);
            float pred = params[hd + H];
            for (int h = 0; h < H; h++) {
                pred += params[hd + h] * a[h];
            }
            float e = pred - y[t];
            loss[t] += 0.5f * e * e * scale;
            float dy = e * scale;
            float *g = &grads[(size_t)t * N];
            for (int h = 0; h < H; h++) {
                g[hd + h] += dy * a[h];
                float s = 1.0f + absf(z[h]);
                float dz = dy * params[hd + h] / (s * s);
                g[H * D + h] += dz;
                for (int d = 0; d < D; d++) {
                    g[h * D + d] += dz * x[d];
                }
            }
            g[hd + H] += dy;
        }
    }
}

/* ---- the merge ----------------------------------------------------------- */

struct step_stats {
    size_t conflicting_pairs;
    size_t projections;
};

/* The stack pointer at the library call, set by merge(). */
static uintptr_t call_sp;

static inline __attribute__((always_inline)) uintptr_t stack_pointer(void) {
    uintptr_t sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    return sp;
}

#ifndef PCGRAD_BASELINE
static pcgrad_rng merge_rng = {2020};

/* One PCGrad merge: sequential, shuffled order, mean reduction. Returns the
 * library's status. */
__attribute__((noinline)) static int merge(struct step_stats *out) {
    pcgrad_config cfg = {0};
    cfg.mode = PCGRAD_MODE_SEQUENTIAL;
    cfg.order = PCGRAD_ORDER_SHUFFLED;
    cfg.reduction = PCGRAD_REDUCTION_MEAN;
    cfg.rng = &merge_rng;
    pcgrad_stats st;
    call_sp = stack_pointer();
    int status = pcgrad_merge_flat(&cfg, grads, T * N, segments, S, has_grad, T * S, T, N,
                                   merged, N, &st, NULL, 0, workspace, WS_LEN);
    out->conflicting_pairs = st.conflicting_pairs;
    out->projections = st.projections;
    return status;
}
#else
/* The plain-sum merge of the footprint baseline: the same reduction rule
 * (mean over the shared trunk, sum over the heads), no projection. */
__attribute__((noinline)) static int merge(struct step_stats *out) {
    call_sp = stack_pointer();
    for (size_t n = 0; n < N; n++) {
        float s = 0;
        for (int t = 0; t < T; t++) {
            s += grads[(size_t)t * N + n];
        }
        merged[n] = n < segments[0] + segments[1] ? s / T : s;
    }
    out->conflicting_pairs = 0;
    out->projections = 0;
    (void)workspace;
    return 0;
}
#endif

/* Runs one merge with the stack below the stack pointer painted and stores
 * the bytes of stack the library call used (everything below the stack
 * pointer at that call: the library's frames, not the firmware's), or
 * PAINT_BYTES if it ran past the painted region. */
__attribute__((noinline)) static int measured_merge(struct step_stats *st, size_t *used) {
    uintptr_t sp = stack_pointer() & ~(uintptr_t)3;
    volatile uint32_t *bottom = (volatile uint32_t *)(sp - PAINT_BYTES);
    volatile uint32_t *top = (volatile uint32_t *)sp;
    /* Nothing else runs (no interrupts), and this frame lies above sp. */
    for (volatile uint32_t *p = bottom; p < top; p++) {
        *p = PATTERN;
    }
    int status = merge(st);
    volatile uint32_t *p = bottom;
    while (p < top && *p == PATTERN) {
        p++;
    }
    *used = p == bottom ? PAINT_BYTES
            : call_sp > (uintptr_t)p ? (size_t)(call_sp - (uintptr_t)p)
                                     : 0;
    return status;
}

/* ---- main ---------------------------------------------------------------- */

static void put_losses(const char *label, long step, const float *l) {
    sh_puts(label);
    if (step >= 0) {
        sh_put_int(step);
    }
    for (int t = 0; t < T; t++) {
        sh_puts("  task");
        sh_put_int(t);
        sh_puts(" ");
        sh_put_fixed(l[t], 4);
    }
    sh_puts("\n");
}

int main(void) {
    int ok = 1;
    sh_puts("pcgrad C firmware: Cortex-M4F, T=3 tasks, N=");
    sh_put_uint(N);
    sh_puts(" parameters, batch 8, 600 steps\n");
#ifndef PCGRAD_BASELINE
    sh_puts("method: PCGrad via the C ABI (sequential, shuffled order, mean reduction)\n");
    sh_puts("library: ");
    sh_puts(pcgrad_version());
    sh_puts("\n");
    static const size_t ts[] = {1, 2, 3, 4, 8, 16};
    for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) {
        size_t len = 0;
        if (pcgrad_workspace_len(ts[k], &len) != PCGRAD_OK) {
            ok = 0;
        }
        sh_puts("workspace T=");
        sh_put_uint(ts[k]);
        sh_puts(" doubles=");
        sh_put_uint(len);
        sh_puts(" bytes=");
        sh_put_uint(len * sizeof(double));
        sh_puts("\n");
        if (ts[k] == T && len != WS_LEN) {
            sh_puts("pcgrad_workspace_len(3) differs from the static workspace\n");
            ok = 0;
        }
    }
#else
    sh_puts("method: plain sum (footprint baseline, library not called)\n");
#endif

    for (size_t n = 0; n < N; n++) {
        params[n] = 0.5f * uniform();
    }
    float window[T] = {0}, first[T] = {0};
    size_t stack_max = 0, conflict_steps = 0, projections = 0;
    for (long step = 1; step <= STEPS; step++) {
        float loss[T] = {0};
        task_gradients(loss);
        for (int t = 0; t < T; t++) {
            window[t] += loss[t] / WINDOW;
        }
        struct step_stats st = {0, 0};
        size_t used = 0;
        int status = measured_merge(&st, &used);
        if (used >= PAINT_BYTES) {
            sh_puts("stack use exceeds the painted region\n");
            return 1;
        }
        stack_max = used > stack_max ? used : stack_max;
        if (status != 0) {
            sh_puts("merge failed at step ");
            sh_put_int(step);
#ifndef PCGRAD_BASELINE
            sh_puts(": ");
            sh_puts(pcgrad_status_str(status));
#endif
            sh_puts("\n");
            return 1;
        }
        conflict_steps += st.conflicting_pairs > 0;
        projections += st.projections;
        for (size_t n = 0; n < N; n++) {
            params[n] -= LR * merged[n];
        }
        if (step % WINDOW == 0) {
            put_losses("step ", step, window);
            if (step == WINDOW) {
                memcpy(first, window, sizeof first);
            }
            if (step < STEPS) {
                memset(window, 0, sizeof window);
            }
        }
    }
    for (int t = 0; t < T; t++) {
        int fell = window[t] < MAX_RATIO * first[t];
        sh_puts("task ");
        sh_put_int(t);
        sh_puts(" loss ");
        sh_put_fixed(first[t], 4);
        sh_puts(" -> ");
        sh_put_fixed(window[t], 4);
        sh_puts(fell ? " (fell)\n" : " (DID NOT FALL ENOUGH)\n");
        ok &= fell;
    }
    sh_puts("conflicting steps ");
    sh_put_uint(conflict_steps);
    sh_puts(" of 600, projections ");
    sh_put_uint(projections);
    sh_puts("\n");
#ifndef PCGRAD_BASELINE
    if (projections == 0) {
        sh_puts("no gradient was ever projected\n");
        ok = 0;
    }
#endif
    sh_puts("stack_bytes=");
    sh_put_uint(stack_max);
    sh_puts("\n");
    sh_puts(ok ? "result: PASS\n" : "result: FAIL\n");
    return ok ? 0 : 1;
}
