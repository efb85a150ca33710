/* Sharded PCGrad over MPI: see pcgrad_mpi.h for the protocol. */
#include "pcgrad_mpi.h"

#include <string.h>

enum { REC = 8 }; /* uint64 fields of the agreement record */
enum { MERGE, PROJECT, GRAM }; /* what a call produces */
enum { R_STATUS, R_TASKS, R_OFFSET, R_DIM, R_WORKSPACE, R_STRATEGY, R_CONFIG, R_RNG };

/* Gram chunk pieces of the columns [a, b): the aligned chunks it touches. */
static size_t pieces(size_t a, size_t b) {
    return b > a ? (b - 1) / PCGRAD_GRAM_CHUNK - a / PCGRAD_GRAM_CHUNK + 1 : 0;
}

/* Doubles before the send and receive areas: the gram_flat buffer (2 T^2),
 * the combined Gram (T^2), an unpacked partial (T^2), the coefficients
 * (T^2 + 2 T) and the apply tile (32 (T + 1)). tasks > 0 and T^2 fits. */
static size_t fixed_len(size_t t) { return 5 * t * t + 2 * t + 32 * (t + 1); }

/* Doubles of one packed upper triangle. */
static size_t packed_len(size_t t) { return t * (t + 1) / 2; }

/* The workspace rank r needs (saturating at SIZE_MAX). */
static size_t need_len(int strategy, size_t t, size_t local_pieces, size_t total_pieces) {
    size_t p = packed_len(t), n = strategy == PCGRAD_MPI_ALLREDUCE ? 2 : local_pieces + total_pieces;
    if (n != 0 && p > (SIZE_MAX - fixed_len(t)) / n) return SIZE_MAX;
    return fixed_len(t) + p * n;
}

pcgrad_status pcgrad_mpi_workspace_len(size_t tasks, size_t total_dim, int ranks, size_t *out) {
    if (out == NULL) return PCGRAD_ERROR_NULL_POINTER;
    if (tasks == 0) return PCGRAD_ERROR_NO_TASKS;
    if (ranks < 1) return PCGRAD_ERROR_INVALID_RANGE;
    if (tasks > 1u << 20) return PCGRAD_ERROR_OVERFLOW;
    /* Every shard touches at most one chunk more than its share. */
    size_t total = total_dim / PCGRAD_GRAM_CHUNK + 1 + (size_t)ranks;
    size_t need = need_len(PCGRAD_MPI_DETERMINISTIC, tasks, total, total);
    if (need == SIZE_MAX) return PCGRAD_ERROR_OVERFLOW;
    *out = need;
    return PCGRAD_OK;
}

static uint64_t fnv(uint64_t h, uint64_t v) {
    for (int i = 0; i < 8; i++) {
        h ^= (v >> (8 * i)) & 0xff;
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* What every rank must pass alike: mode, order, reduction, check_finite
 * and the explicit order table when it is read. */
static uint64_t config_fingerprint(const pcgrad_config *c) {
    uint64_t h = 0xcbf29ce484222325ULL;
    h = fnv(h, c->mode);
    h = fnv(h, c->order);
    h = fnv(h, c->reduction);
    h = fnv(h, c->check_finite);
    if (c->mode == PCGRAD_MODE_SEQUENTIAL && c->order == PCGRAD_ORDER_EXPLICIT) {
        h = fnv(h, c->order_table_len);
        if (c->order_table != NULL)
            for (size_t k = 0; k < c->order_table_len; k++) h = fnv(h, c->order_table[k]);
    }
    return h;
}

static int reads_rng(const pcgrad_config *c) {
    return c->mode == PCGRAD_MODE_SEQUENTIAL && c->order == PCGRAD_ORDER_SHUFFLED && c->rng != NULL;
}

/* Whether the byte ranges [a, a + na) and [b, b + nb) intersect. */
static int overlaps(const void *a, size_t na, const void *b, size_t nb) {
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return na != 0 && nb != 0 && x < y + nb && y < x + na;
}

static void pack_upper(const double *g, size_t t, double *out) {
    for (size_t i = 0; i < t; i++)
        for (size_t j = i; j < t; j++) *out++ = g[i * t + j];
}

static void unpack_sym(const double *p, size_t t, double *g) {
    for (size_t i = 0; i < t; i++)
        for (size_t j = i; j < t; j++) g[i * t + j] = g[j * t + i] = *p++;
}

/* The local checks of phase (a): everything a rank can judge alone, then
 * phase 1 into the send area. Returns the local status. */
static pcgrad_status local_phase(int strategy, const pcgrad_config *config, const float *grads, size_t grads_len,
                                 const size_t *segments, size_t segments_len, const uint8_t *has_grad,
                                 size_t has_grad_len, size_t t, size_t offset, size_t dim, int what,
                                 const float *merged, size_t merged_len, const double *gram_out,
                                 size_t gram_out_len, double *ws, size_t ws_len) {
    if (config == NULL || ws == NULL) return PCGRAD_ERROR_NULL_POINTER;
    int merged_required = what == MERGE;
    if (strategy != PCGRAD_MPI_ALLREDUCE && strategy != PCGRAD_MPI_DETERMINISTIC) return PCGRAD_ERROR_INVALID_ENUM;
    if (config->reduction > PCGRAD_REDUCTION_SUM) return PCGRAD_ERROR_INVALID_ENUM;
    if (t == 0) return PCGRAD_ERROR_NO_TASKS;
    if (t > 1u << 20 || offset > SIZE_MAX - dim) return PCGRAD_ERROR_OVERFLOW;
    if (what == GRAM && gram_out == NULL) return PCGRAD_ERROR_NULL_POINTER;
    if (what == GRAM && gram_out_len < t * t) return PCGRAD_ERROR_LENGTH_MISMATCH;
    size_t gob = what == GRAM ? gram_out_len * sizeof(double) : 0;
    if (overlaps(gram_out, gob, ws, ws_len * sizeof(double)) ||
        overlaps(gram_out, gob, grads, grads_len * sizeof(float)) ||
        overlaps(gram_out, gob, segments, segments_len * sizeof(size_t)) ||
        overlaps(gram_out, gob, has_grad, has_grad_len))
        return PCGRAD_ERROR_OVERLAP;
    if (merged == NULL && (merged_required || merged_len != 0)) return PCGRAD_ERROR_NULL_POINTER;
    if (merged != NULL && merged_len != dim) return PCGRAD_ERROR_LENGTH_MISMATCH;
    size_t local = pieces(offset, offset + dim);
    size_t p = packed_len(t);
    if (ws_len < need_len(strategy, t, local, 0)) return PCGRAD_ERROR_WORKSPACE_TOO_SMALL;
    size_t wsb = ws_len * sizeof(double), mb = merged_len * sizeof(float);
    if (overlaps(merged, mb, ws, wsb) || overlaps(merged, mb, grads, grads_len * sizeof(float)) ||
        overlaps(merged, mb, segments, segments_len * sizeof(size_t)) ||
        overlaps(merged, mb, has_grad, has_grad_len) || overlaps(ws, wsb, grads, grads_len * sizeof(float)) ||
        overlaps(ws, wsb, segments, segments_len * sizeof(size_t)) || overlaps(ws, wsb, has_grad, has_grad_len))
        return PCGRAD_ERROR_OVERLAP;

    size_t gl = 2 * t * t;
    double *gram = ws, *send = ws + fixed_len(t);
    if (strategy == PCGRAD_MPI_ALLREDUCE || local == 0) {
        /* One pass over the whole shard (also the validation of an empty one). */
        memset(gram, 0, t * t * sizeof *gram);
        pcgrad_status s = pcgrad_gram_flat(grads, grads_len, segments, segments_len, has_grad, has_grad_len, t,
                                           dim, 0, dim, gram, gl);
        if (s != PCGRAD_OK) return s;
        if (strategy == PCGRAD_MPI_ALLREDUCE) pack_upper(gram, t, send);
        return PCGRAD_OK;
    }
    /* One partial per chunk piece, each from zeros, in column order. */
    for (size_t k = 0; k < local; k++) {
        size_t c = offset / PCGRAD_GRAM_CHUNK + k;
        size_t a = c * PCGRAD_GRAM_CHUNK, b = a + PCGRAD_GRAM_CHUNK;
        size_t lo = (a > offset ? a : offset) - offset, hi = (b < offset + dim ? b : offset + dim) - offset;
        memset(gram, 0, t * t * sizeof *gram);
        pcgrad_status s = pcgrad_gram_flat(grads, grads_len, segments, segments_len, has_grad, has_grad_len, t,
                                           dim, lo, hi, gram, gl);
        if (s != PCGRAD_OK) return s;
        pack_upper(gram, t, send + k * p);
    }
    return PCGRAD_OK;
}

/* Phase (a) on the gathered records: the same verdict on every rank. */
static pcgrad_status agree(const uint64_t *all, int ranks, size_t *total_pieces) {
    for (int r = 0; r < ranks; r++) {
        int64_t s = (int64_t)all[r * REC + R_STATUS];
        if (s != PCGRAD_OK) return (pcgrad_status)s;
    }
    const uint64_t *r0 = all;
    size_t total = 0, end = 0;
    for (int r = 0; r < ranks; r++) {
        const uint64_t *x = all + r * REC;
        if (x[R_STRATEGY] != r0[R_STRATEGY]) return PCGRAD_ERROR_INVALID_ENUM;
        if (x[R_TASKS] != r0[R_TASKS]) return PCGRAD_ERROR_LENGTH_MISMATCH;
        if (x[R_OFFSET] != end) return PCGRAD_ERROR_INVALID_RANGE;
        if (x[R_CONFIG] != r0[R_CONFIG] || x[R_RNG] != r0[R_RNG]) return PCGRAD_ERROR_INVALID_ORDER;
        end += x[R_DIM];
        total += pieces(x[R_OFFSET], x[R_OFFSET] + x[R_DIM]);
    }
    int strategy = (int)r0[R_STRATEGY];
    size_t t = r0[R_TASKS];
    for (int r = 0; r < ranks; r++) {
        const uint64_t *x = all + r * REC;
        size_t local = pieces(x[R_OFFSET], x[R_OFFSET] + x[R_DIM]);
        if (x[R_WORKSPACE] < need_len(strategy, t, local, total)) return PCGRAD_ERROR_WORKSPACE_TOO_SMALL;
    }
    *total_pieces = total;
    return PCGRAD_OK;
}

static pcgrad_status sharded(MPI_Comm comm, int strategy, const pcgrad_config *config, float *grads,
                             size_t grads_len, const size_t *segments, size_t segments_len,
                             const uint8_t *has_grad, size_t has_grad_len, size_t t, size_t offset, size_t dim,
                             int what, float *merged, size_t merged_len, double *gram_out,
                             size_t gram_out_len, pcgrad_stats *stats, pcgrad_mpi_traffic *traffic, double *ws,
                             size_t ws_len) {
    int project = what == PROJECT;
    int ranks = 0;
    MPI_Comm_size(comm, &ranks);

    /* (a) local checks and phase 1, then the first agreement. */
    pcgrad_status s = local_phase(strategy, config, grads, grads_len, segments, segments_len, has_grad,
                                  has_grad_len, t, offset, dim, what, merged, merged_len, gram_out, gram_out_len, ws,
                                  ws_len);
    uint64_t rec[REC] = {0};
    rec[R_STATUS] = (uint64_t)(int64_t)s;
    rec[R_TASKS] = t;
    rec[R_OFFSET] = offset;
    rec[R_DIM] = dim;
    rec[R_WORKSPACE] = ws == NULL ? 0 : ws_len;
    rec[R_STRATEGY] = (uint64_t)(int64_t)strategy;
    rec[R_CONFIG] = config == NULL ? 0 : config_fingerprint(config);
    rec[R_RNG] = config != NULL && reads_rng(config) ? config->rng->state : 0;
    /* The records of every rank, in static memory (the workspace is not
     * known to be large enough before the agreement): one call at a time
     * per process, as MPI without MPI_THREAD_MULTIPLE requires anyway. */
    enum { MAXR = 4096 };
    static uint64_t all[MAXR * REC];
    if (ranks > MAXR) return PCGRAD_ERROR_OVERFLOW; /* the same on every rank */
    MPI_Allgather(rec, REC, MPI_UINT64_T, all, REC, MPI_UINT64_T, comm);
    size_t total = 0;
    s = agree(all, ranks, &total);
    size_t agree_bytes = REC * sizeof(uint64_t) + sizeof(int);
    if (s != PCGRAD_OK) {
        if (traffic) {
            traffic->agree_bytes = REC * sizeof(uint64_t);
            traffic->combine_bytes = traffic->receive_bytes = 0;
        }
        return s;
    }

    /* Phase 2: combine, then the coefficients, then the second agreement. */
    size_t tt = t * t, p = packed_len(t), local = pieces(offset, offset + dim);
    double *g = ws + 2 * tt, *unpacked = g + tt, *coef = unpacked + tt, *tile = coef + tt + 2 * t;
    double *send = ws + fixed_len(t);
    size_t sent, received;
    if (strategy == PCGRAD_MPI_ALLREDUCE) {
        double *recv = send + p;
        MPI_Allreduce(send, recv, (int)p, MPI_DOUBLE, MPI_SUM, comm);
        unpack_sym(recv, t, g);
        sent = received = p * sizeof(double);
    } else {
        double *recv = send + local * p;
        int counts[MAXR], displs[MAXR], at = 0;
        for (int r = 0; r < ranks; r++) {
            const uint64_t *x = all + r * REC;
            counts[r] = (int)(pieces(x[R_OFFSET], x[R_OFFSET] + x[R_DIM]) * p);
            displs[r] = at;
            at += counts[r];
        }
        MPI_Allgatherv(send, (int)(local * p), MPI_DOUBLE, recv, counts, displs, MPI_DOUBLE, comm);
        memset(g, 0, tt * sizeof *g);
        for (size_t k = 0; k < total; k++) {
            unpack_sym(recv + k * p, t, unpacked);
            pcgrad_gram_combine(unpacked, tt, t, g, tt); /* cannot fail: sizes checked */
        }
        sent = local * p * sizeof(double);
        received = total * p * sizeof(double);
    }
    if (what == GRAM) { /* nothing can fail past the combination */
        memcpy(gram_out, g, tt * sizeof *g);
        if (traffic) {
            traffic->agree_bytes = REC * sizeof(uint64_t);
            traffic->combine_bytes = sent;
            traffic->receive_bytes = received;
        }
        return PCGRAD_OK;
    }
    pcgrad_stats st = {0, 0};
    uint64_t rng_before = config->rng != NULL ? config->rng->state : 0;
    int cs = pcgrad_coefficients(config, g, tt, t, &st, coef, tt + 2 * t), agreed = cs;
    MPI_Allreduce(&cs, &agreed, 1, MPI_INT, MPI_MIN, comm);
    if (traffic) {
        traffic->agree_bytes = agree_bytes;
        traffic->combine_bytes = sent;
        traffic->receive_bytes = received;
    }
    if (agreed != PCGRAD_OK) {
        if (config->rng != NULL) config->rng->state = rng_before; /* as if not called */
        return (pcgrad_status)agreed;
    }

    /* Phase 3 on the local shard (its arguments passed phase 1's checks). */
    if (dim != 0) {
        size_t cl = tt + 2 * t, tl = 32 * (t + 1);
        s = project ? pcgrad_apply_projected_flat(grads, grads_len, segments, segments_len, has_grad,
                                                  has_grad_len, coef, cl, t, dim, config->reduction, 0, dim,
                                                  merged, merged_len, tile, tl)
                    : pcgrad_apply_merged_flat(grads, grads_len, segments, segments_len, has_grad, has_grad_len,
                                               coef, cl, t, dim, config->reduction, 0, dim, merged, merged_len,
                                               tile, tl);
        if (s != PCGRAD_OK) return s;
    }
    if (stats) *stats = st;
    return PCGRAD_OK;
}

pcgrad_status pcgrad_mpi_merge_flat(MPI_Comm comm, int strategy, const pcgrad_config *config,
                                    const float *grads, size_t grads_len, const size_t *segments,
                                    size_t segments_len, const uint8_t *has_grad, size_t has_grad_len,
                                    size_t tasks, size_t offset, size_t dim, float *merged,
                                    size_t merged_len, pcgrad_stats *stats, pcgrad_mpi_traffic *traffic,
                                    double *workspace, size_t workspace_len) {
    /* The merged path only reads grads (the cast drops const for the shared
     * body, which writes grads only when projecting). */
    return sharded(comm, strategy, config, (float *)(uintptr_t)grads, grads_len, segments, segments_len,
                   has_grad, has_grad_len, tasks, offset, dim, MERGE, merged, merged_len, NULL, 0, stats, traffic,
                   workspace, workspace_len);
}

pcgrad_status pcgrad_mpi_project_flat(MPI_Comm comm, int strategy, const pcgrad_config *config, float *grads,
                                      size_t grads_len, const size_t *segments, size_t segments_len,
                                      const uint8_t *has_grad, size_t has_grad_len, size_t tasks,
                                      size_t offset, size_t dim, float *merged, size_t merged_len,
                                      pcgrad_stats *stats, pcgrad_mpi_traffic *traffic, double *workspace,
                                      size_t workspace_len) {
    return sharded(comm, strategy, config, grads, grads_len, segments, segments_len, has_grad, has_grad_len,
                   tasks, offset, dim, PROJECT, merged, merged_len, NULL, 0, stats, traffic, workspace,
                   workspace_len);
}

pcgrad_status pcgrad_mpi_gram_flat(MPI_Comm comm, int strategy, const float *grads, size_t grads_len,
                                   const size_t *segments, size_t segments_len, const uint8_t *has_grad,
                                   size_t has_grad_len, size_t tasks, size_t offset, size_t dim, double *gram,
                                   size_t gram_len, pcgrad_mpi_traffic *traffic, double *workspace,
                                   size_t workspace_len) {
    static const pcgrad_config none = {0, 0, 0, 0, 0, 0, NULL, 0, NULL};
    return sharded(comm, strategy, &none, (float *)(uintptr_t)grads, grads_len, segments, segments_len,
                   has_grad, has_grad_len, tasks, offset, dim, GRAM, NULL, 0, gram, gram_len, NULL, traffic,
                   workspace, workspace_len);
}
