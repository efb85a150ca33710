/* Sharded PCGrad over MPI, on top of the three-phase C API of libpcgrad.
 *
 * Every rank of a communicator makes the same call (collective, like an MPI
 * call) and holds a contiguous column shard
 * [offset, offset + dim) of every task's gradient (a row-major T x dim
 * buffer; shards in rank order, covering 0..N without gaps; sizes may
 * differ, a shard may be empty). One call per step:
 *
 *   1. pcgrad_gram_flat on the local shard (the partial T x T Gram);
 *   2. the partials are combined across ranks, and every rank derives the
 *      same coefficients with pcgrad_coefficients from the same Gram and
 *      the same config (and PRNG state, for a shuffled order);
 *   3. pcgrad_apply_merged_flat (or pcgrad_apply_projected_flat, in place)
 *      on the local shard.
 *
 * Strategies for step 2:
 *   PCGRAD_MPI_ALLREDUCE      one MPI_Allreduce (MPI_SUM) of the upper
 *                             triangle of the partial Gram, T(T+1)/2 doubles.
 *                             The order of addition is up to MPI: results are
 *                             within rounding of one process, not bitwise.
 *   PCGRAD_MPI_DETERMINISTIC  MPI_Allgatherv of one partial per Gram chunk
 *                             piece of every shard (the shard cut at the
 *                             global multiples of PCGRAD_GRAM_CHUNK), added
 *                             in rank order (= column order) with
 *                             pcgrad_gram_combine: bitwise reproducible for
 *                             a given partition, and bitwise identical to one
 *                             process when every shard boundary is a multiple
 *                             of PCGRAD_GRAM_CHUNK.
 *
 * Status agreement (no rank hangs, every rank returns the same status):
 *   a) before the combination, an MPI_Allgather of a small record per rank
 *      (its local status after validating its arguments and running phase 1,
 *      T, offset, dim, workspace length, a fingerprint of the config and
 *      PRNG state); every rank checks every record the same way, so all
 *      agree on the first error in rank order, or on a partition or config
 *      mismatch;
 *   b) after the combination, an MPI_Allreduce (MPI_MIN) of the status of
 *      pcgrad_coefficients (PCGRAD_ERROR_NON_FINITE for a NaN or infinity
 *      on any rank with check_finite).
 *   After an error no caller buffer is written on any rank (workspace
 *   aside) and the PRNG state is unchanged, so the next step can retry.
 *   After (b) the apply phase cannot fail: its arguments were validated in
 *   (a).
 *
 * Status codes: those of pcgrad.h. Disagreements across ranks map to
 *   PCGRAD_ERROR_LENGTH_MISMATCH (different T),
 *   PCGRAD_ERROR_INVALID_RANGE (shards not contiguous in rank order),
 *   PCGRAD_ERROR_INVALID_ORDER (different mode, order, reduction,
 *   check_finite, order table or PRNG state),
 *   PCGRAD_ERROR_INVALID_ENUM (different or unknown strategy),
 *   PCGRAD_ERROR_WORKSPACE_TOO_SMALL (a rank's workspace below
 *   pcgrad_mpi_workspace_len).
 */
#ifndef PCGRAD_MPI_H
#define PCGRAD_MPI_H

#include <mpi.h>
#include <pcgrad.h>

#include <stddef.h>
#include <stdint.h>

/* The library's Gram chunk (`CHUNK` in src/engine.rs): the Gram pass sums
 * the partials of the aligned column chunks [k C, (k + 1) C) in increasing
 * k. Shard boundaries at its multiples make the deterministic strategy
 * bitwise identical to one process. */
#define PCGRAD_GRAM_CHUNK 8192

#define PCGRAD_MPI_ALLREDUCE 0
#define PCGRAD_MPI_DETERMINISTIC 1

/* Bytes each rank hands to MPI in one call (payload, not wire bytes). */
typedef struct pcgrad_mpi_traffic {
    size_t agree_bytes;   /* the two status agreements */
    size_t combine_bytes; /* the Gram combination, sent by this rank */
    size_t receive_bytes; /* the Gram combination, received by this rank */
} pcgrad_mpi_traffic;

/* Doubles of workspace a rank needs for T tasks when the whole gradient has
 * `total_dim` columns over `ranks` ranks, for either strategy. */
pcgrad_status pcgrad_mpi_workspace_len(size_t tasks, size_t total_dim, int ranks, size_t *out);

/* Merged gradient of the local shard into `merged` (dim floats). `grads`
 * (T * dim floats), `segments` and `has_grad` (optional, NULL and 0) describe
 * the local shard as in pcgrad_merge_flat (the segments of the shard: the
 * variables cut at its boundaries). `stats` and `traffic` are optional. */
pcgrad_status pcgrad_mpi_merge_flat(MPI_Comm comm, int strategy, const pcgrad_config *config,
                                    const float *grads, size_t grads_len, const size_t *segments,
                                    size_t segments_len, const uint8_t *has_grad, size_t has_grad_len,
                                    size_t tasks, size_t offset, size_t dim, float *merged,
                                    size_t merged_len, pcgrad_stats *stats, pcgrad_mpi_traffic *traffic,
                                    double *workspace, size_t workspace_len);

/* As pcgrad_mpi_merge_flat, but projects the local shard in place (each row
 * becomes g'_t on the shard); `merged` is optional (NULL and 0). */
pcgrad_status pcgrad_mpi_project_flat(MPI_Comm comm, int strategy, const pcgrad_config *config,
                                      float *grads, size_t grads_len, const size_t *segments,
                                      size_t segments_len, const uint8_t *has_grad, size_t has_grad_len,
                                      size_t tasks, size_t offset, size_t dim, float *merged,
                                      size_t merged_len, pcgrad_stats *stats, pcgrad_mpi_traffic *traffic,
                                      double *workspace, size_t workspace_len);

/* Phases 1 and 2a only: the whole T x T Gram matrix (row-major, symmetric)
 * into `gram` (at least T * T doubles) on every rank, combined by
 * `strategy`: for diagnostics (cosines), or to compare strategies. One
 * agreement (a), no config. */
pcgrad_status pcgrad_mpi_gram_flat(MPI_Comm comm, int strategy, const float *grads, size_t grads_len,
                                   const size_t *segments, size_t segments_len, const uint8_t *has_grad,
                                   size_t has_grad_len, size_t tasks, size_t offset, size_t dim, double *gram,
                                   size_t gram_len, pcgrad_mpi_traffic *traffic, double *workspace,
                                   size_t workspace_len);

#endif /* PCGRAD_MPI_H */
