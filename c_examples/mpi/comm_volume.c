/* Bytes each rank sends per step: sharded PCGrad's Gram combination against
 * the gradient all-reduce of data-parallel training.
 *
 * Run with the TCP transport on the loopback interface (mpirun --mca btl
 * self,tcp --mca btl_tcp_if_include lo): every byte a rank sends to another
 * goes through a socket write, which Linux counts in the `wchar` field of
 * /proc/self/io. Read before and after each operation (nothing else is
 * written in between), it gives what went over the transport, headers and
 * the collective algorithm's relaying included, not the payload handed to
 * MPI. Per (T, N), averaged over REPS calls, the largest and the
 * mean over ranks of:
 *   - pcgrad_mpi_merge_flat, allreduce and deterministic strategy (the status
 *     agreements included), on an even column split;
 *   - MPI_Allreduce of the T task gradients (T N floats: what a PCGrad step
 *     needs when every rank holds whole gradients of a data shard);
 *   - MPI_Allreduce of one merged gradient (N floats: plain data parallel).
 * Exit status 1 when a call fails. */
#include "pcgrad_mpi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { REPS = 4 };

/* Bytes this process has written (files, pipes and sockets). */
static unsigned long long sent_bytes(void) {
    unsigned long long v = 0;
    char key[64];
    FILE *f = fopen("/proc/self/io", "r");
    if (f == NULL) return 0;
    while (fscanf(f, "%63s %llu", key, &v) == 2)
        if (strcmp(key, "wchar:") == 0) break;
    fclose(f);
    return v;
}

int main(int argc, char **argv) {
    int rank, ranks, status = 0;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    MPI_Comm comm = MPI_COMM_WORLD;
    static const size_t ts[] = {3, 8};
    static const size_t ns[] = {26627, 1u << 20};
    if (rank == 0)
        printf("bytes sent per step by one rank, %d ranks (TCP on loopback, /proc/self/io wchar; max / mean over ranks)\n"
               "%3s %9s | %21s | %21s | %21s | %21s\n",
               ranks, "T", "N", "merge, allreduce", "merge, deterministic", "all-reduce T grads",
               "all-reduce merged");
    for (size_t a = 0; a < 2; a++)
        for (size_t b = 0; b < 2; b++) {
            size_t t = ts[a], n = ns[b];
            size_t lo = n * (size_t)rank / (size_t)ranks, dim = n * (size_t)(rank + 1) / (size_t)ranks - lo;
            size_t ws_len = 0;
            pcgrad_mpi_workspace_len(t, n, ranks, &ws_len);
            float *shard = malloc((t * dim + 1) * sizeof *shard), *merged = malloc((dim + 1) * sizeof *merged);
            float *full = malloc(t * n * sizeof *full), *sum = malloc(t * n * sizeof *sum);
            double *ws = malloc(ws_len * sizeof *ws);
            if (!shard || !merged || !full || !sum || !ws) MPI_Abort(MPI_COMM_WORLD, 2);
            for (size_t i = 0; i < t * dim; i++) shard[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
            for (size_t i = 0; i < t * n; i++) full[i] = 1.0f;
            double mine[4];
            for (int op = 0; op < 4; op++) {
                MPI_Barrier(comm);
                unsigned long long before = sent_bytes();
                for (int r = 0; r < REPS; r++) {
                    pcgrad_config cfg = {0};
                    cfg.threads = 1;
                    pcgrad_status s = PCGRAD_OK;
                    if (op < 2)
                        s = pcgrad_mpi_merge_flat(comm, op, &cfg, shard, t * dim, NULL, 0, NULL, 0, t, lo, dim,
                                                  merged, dim, NULL, NULL, ws, ws_len);
                    else
                        MPI_Allreduce(full, sum, (int)(op == 2 ? t * n : n), MPI_FLOAT, MPI_SUM, comm);
                    if (s != PCGRAD_OK) status = 1;
                }
                unsigned long long after = sent_bytes();
                MPI_Barrier(comm); /* the barriers' own messages fall outside the window */
                mine[op] = (double)(after - before) / REPS;
            }
            double mx[4], mean[4];
            MPI_Reduce(mine, mx, 4, MPI_DOUBLE, MPI_MAX, 0, comm);
            MPI_Reduce(mine, mean, 4, MPI_DOUBLE, MPI_SUM, 0, comm);
            if (rank == 0) {
                printf("%3zu %9zu |", t, n);
                for (int op = 0; op < 4; op++) printf(" %10.0f / %8.0f |", mx[op], mean[op] / ranks);
                printf("\n");
            }
            free(shard);
            free(merged);
            free(full);
            free(sum);
            free(ws);
        }
    MPI_Finalize();
    return status;
}
