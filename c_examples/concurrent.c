/* Concurrent callers of the C API, for ThreadSanitizer (scripts/tsan.sh):
 * CALLERS pthreads each run pcgrad_merge_flat and pcgrad_project_flat
 * ROUNDS times on their own buffers, with config.threads = 2 and T x N
 * large enough (2^21 elements) for the library to split each pass over
 * its own worker threads too. Every result must be bitwise the one of a
 * single-threaded call (config.threads = 1) made first on the main thread.
 * Exits non-zero on any mismatch or error status. */
#define _POSIX_C_SOURCE 200809L
#include <pcgrad.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { T = 4, N = 1 << 19, CALLERS = 3, ROUNDS = 2 };

static float *want_merged, *want_projected;

static void fill(float *g, unsigned seed) {
    unsigned s = seed * 2654435761u + 1u;
    for (size_t k = 0; k < (size_t)T * N; k++) {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        float v = (float)(s >> 8) / 16777216.0f - 0.5f;
        g[k] = (k / N) % 2 ? -v : v;
    }
}

typedef struct {
    size_t threads;
    int failures;
} job;

static int run(size_t threads, float *merged, float *projected) {
    pcgrad_config c = {0};
    size_t wl = 0;
    c.threads = threads;
    c.mode = PCGRAD_MODE_SIMULTANEOUS;
    if (pcgrad_workspace_len(T, &wl) != PCGRAD_OK) return 1;
    double *ws = malloc(wl * sizeof *ws);
    float *g = malloc((size_t)T * N * sizeof *g);
    if (!ws || !g) return 1;
    fill(g, 7);
    int bad = pcgrad_merge_flat(&c, g, (size_t)T * N, NULL, 0, NULL, 0, T, N, merged, N, NULL,
                                NULL, 0, ws, wl) != PCGRAD_OK;
    c.mode = PCGRAD_MODE_SEQUENTIAL;
    memcpy(projected, g, (size_t)T * N * sizeof *g);
    bad |= pcgrad_project_flat(&c, projected, (size_t)T * N, NULL, 0, NULL, 0, T, N, NULL, 0, NULL,
                               NULL, 0, ws, wl) != PCGRAD_OK;
    free(ws);
    free(g);
    return bad;
}

static void *caller(void *arg) {
    job *j = arg;
    float *m = malloc(N * sizeof *m);
    float *p = malloc((size_t)T * N * sizeof *p);
    if (!m || !p) {
        j->failures++;
        return NULL;
    }
    for (int r = 0; r < ROUNDS; r++) {
        if (run(j->threads, m, p) || memcmp(m, want_merged, N * sizeof *m) ||
            memcmp(p, want_projected, (size_t)T * N * sizeof *p))
            j->failures++;
    }
    free(m);
    free(p);
    return NULL;
}

int main(void) {
    want_merged = malloc(N * sizeof *want_merged);
    want_projected = malloc((size_t)T * N * sizeof *want_projected);
    if (!want_merged || !want_projected || run(1, want_merged, want_projected)) return 1;
    pthread_t th[CALLERS];
    job jobs[CALLERS];
    for (int i = 0; i < CALLERS; i++) {
        jobs[i].threads = 2;
        jobs[i].failures = 0;
        if (pthread_create(&th[i], NULL, caller, &jobs[i])) return 1;
    }
    int failures = 0;
    for (int i = 0; i < CALLERS; i++) {
        pthread_join(th[i], NULL);
        failures += jobs[i].failures;
    }
    printf("concurrent: %d callers x %d rounds, T=%d N=%d, threads=2: %d mismatch(es)\n", CALLERS,
           ROUNDS, T, N, failures);
    free(want_merged);
    free(want_projected);
    return failures != 0;
}
