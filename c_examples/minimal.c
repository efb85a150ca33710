/* The smallest use of the C API: merge two conflicting gradients of three
 * parameters. Copied into the README; built and run by `make test`. */
#include <pcgrad.h>
#include <stdio.h>

int main(void) {
    enum { T = 2, N = 3 };
    const float grads[T * N] = {
        1.0f, 0.0f, 2.0f,  /* task 0 */
        -1.0f, 1.0f, 0.0f, /* task 1: g0 . g1 = -1 < 0, a conflict */
    };
    float merged[N];
    double workspace[112]; /* pcgrad_workspace_len(2) = 3*4 + 34*2 + 32 */
    pcgrad_config config = {0}; /* sequential, fixed order, mean reduction */
    pcgrad_stats stats;

    size_t need = 0;
    if (pcgrad_workspace_len(T, &need) != PCGRAD_OK || need > 112) return 1;

    pcgrad_status s = pcgrad_merge_flat(&config, grads, T * N,
                                        NULL, 0, /* segments: one variable */
                                        NULL, 0, /* has_grad: all present */
                                        T, N, merged, N, &stats,
                                        NULL, 0, /* no diagnostic matrix */
                                        workspace, 112);
    if (s != PCGRAD_OK) {
        fprintf(stderr, "pcgrad: %s\n", pcgrad_status_str(s));
        return 1;
    }
    /* g0' = g0 + g1/2 = (0.5, 0.5, 2), g1' = g1 + g0/5 = (-0.8, 1, 0.4):
     * merged = mean = (-0.15, 0.75, 1.2) */
    printf("pcgrad %s: merged = (%g, %g, %g), %zu conflicting pair(s), %zu projection(s)\n",
           pcgrad_version(), merged[0], merged[1], merged[2],
           stats.conflicting_pairs, stats.projections);
    return 0;
}
