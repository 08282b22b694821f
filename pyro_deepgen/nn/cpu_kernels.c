/* CPU kernels for RBM training, float32, x86-64 AVX2 + FMA: products with a mostly-zero left
 * factor (binary unit states) and 16-bit Bernoulli draws.
 *
 * Compiled on first use by pyro_deepgen/nn/native.py and called through ctypes; see
 * pyro_deepgen/nn/sparse_matmul.py and pyro_deepgen.models.rbm.bernoulli_sample_16bit for the
 * maths and the torch fallbacks.
 *
 *   rows:   out (n, m)  = bias + x (n, k) @ table (k, m)    (sums of the selected rows of table)
 *   rows_t: out (k, m)  = x (n, k)^T @ other (n, m)         (sums of the selected rows of other)
 *
 * Only the nonzeros of x are visited. The m output columns are cut into blocks of 64 floats (8
 * AVX registers), so that the block of the table read by all rows of one thread stays in its
 * L2 cache, and every selected row segment is added into registers. All matrices are row-major
 * and contiguous. Parallel with OpenMP (torch's own runtime when it is loaded).
 * Returns 0; 1 when x has more than max_nonzeros nonzeros (nothing is written: the caller takes
 * the dense product); -1 when out of memory.
 */
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>

#define BLOCK 64

/* out[0:w] = init[0:w] (or 0) + sum_t weight[t] * base[offset[t] + 0:w], 0 < w <= BLOCK */
static inline void gather_sum(const float *weight, const int64_t *offset, int64_t count,
                              const float *base, int w, const float *init, float *out)
{
    __m256 acc[BLOCK / 8];
    const int full = w / 8, rest = w % 8, regs = full + (rest > 0);
    int32_t lanes[8];
    for (int l = 0; l < 8; l++) lanes[l] = l < rest ? -1 : 0;
    const __m256i mask = _mm256_loadu_si256((const __m256i *)lanes);
    for (int r = 0; r < regs; r++) {
        if (!init) acc[r] = _mm256_setzero_ps();
        else if (r < full) acc[r] = _mm256_loadu_ps(init + 8 * r);
        else acc[r] = _mm256_maskload_ps(init + 8 * r, mask);
    }
    if (full == BLOCK / 8) { /* the common case, unrolled by the compiler */
        for (int64_t t = 0; t < count; t++) {
            const float *p = base + offset[t];
            const __m256 s = _mm256_set1_ps(weight[t]);
            for (int r = 0; r < BLOCK / 8; r++)
                acc[r] = _mm256_fmadd_ps(s, _mm256_loadu_ps(p + 8 * r), acc[r]);
        }
    } else {
        for (int64_t t = 0; t < count; t++) {
            const float *p = base + offset[t];
            const __m256 s = _mm256_set1_ps(weight[t]);
            for (int r = 0; r < full; r++)
                acc[r] = _mm256_fmadd_ps(s, _mm256_loadu_ps(p + 8 * r), acc[r]);
            if (rest)
                acc[full] = _mm256_fmadd_ps(s, _mm256_maskload_ps(p + 8 * full, mask), acc[full]);
        }
    }
    for (int r = 0; r < full; r++) _mm256_storeu_ps(out + 8 * r, acc[r]);
    if (rest) _mm256_maskstore_ps(out + 8 * full, mask, acc[full]);
}

int pyro_deepgen_sparse_rows(const float *x, int64_t n, int64_t k, const float *table, int64_t m,
                             const float *bias, float *out, int64_t max_nonzeros, int num_threads)
{
    int64_t total = 0;
    int64_t *offset = malloc(sizeof(int64_t) * (size_t)(n * k + 1));
    float *weight = malloc(sizeof(float) * (size_t)(n * k + 1));
    int64_t *count = malloc(sizeof(int64_t) * (size_t)(n + 1));
    if (!offset || !weight || !count) {
        free(offset); free(weight); free(count);
        return -1;
    }
    #pragma omp parallel num_threads(num_threads)
    {
        /* row r's nonzeros: slots [r k, r k + count[r]), compacted without branches */
        #pragma omp for schedule(static) reduction(+:total)
        for (int64_t r = 0; r < n; r++) {
            const float *xr = x + r * k;
            int64_t *o = offset + r * k;
            float *wt = weight + r * k;
            int64_t c = 0;
            for (int64_t i = 0; i < k; i++) {
                o[c] = i * m;
                wt[c] = xr[i];
                c += xr[i] != 0.f;
            }
            count[r] = c;
            total += c;
        } /* implicit barrier: total is complete */
        if (total <= max_nonzeros) {
            const int threads = omp_get_num_threads(), me = omp_get_thread_num();
            const int64_t r0 = n * me / threads, r1 = n * (me + 1) / threads;
            for (int64_t j = 0; j < m; j += BLOCK) {
                const int w = (int)(m - j < BLOCK ? m - j : BLOCK);
                for (int64_t r = r0; r < r1; r++)
                    gather_sum(weight + r * k, offset + r * k, count[r], table + j, w,
                               bias ? bias + j : NULL, out + r * m + j);
            }
        }
    }
    free(offset); free(weight); free(count);
    return total > max_nonzeros;
}

int pyro_deepgen_sparse_rows_t(const float *x, int64_t n, int64_t k, const float *other, int64_t m,
                               float *out, int64_t max_nonzeros, int num_threads)
{
    int64_t total = 0;
    int64_t *offset = malloc(sizeof(int64_t) * (size_t)(n * k + 1));
    float *weight = malloc(sizeof(float) * (size_t)(n * k + 1));
    int64_t *start = malloc(sizeof(int64_t) * (size_t)(k + 1));
    int64_t *end = malloc(sizeof(int64_t) * (size_t)(k + 1));
    if (!offset || !weight || !start || !end) {
        free(offset); free(weight); free(start); free(end);
        return -1;
    }
    #pragma omp parallel num_threads(num_threads)
    {
        /* each thread owns the columns [i0, i1) of x (rows of out) and the slots [n i0, n i1)
           of a column-major list of the nonzeros, which it fills alone */
        const int threads = omp_get_num_threads(), me = omp_get_thread_num();
        const int64_t i0 = k * me / threads, i1 = k * (me + 1) / threads;
        int64_t mine = 0, slot = n * i0;
        for (int64_t i = i0; i < i1; i++) end[i] = 0;
        for (int64_t r = 0; r < n; r++) {
            const float *xr = x + r * k;
            for (int64_t i = i0; i < i1; i++) end[i] += xr[i] != 0.f;
        }
        for (int64_t i = i0; i < i1; i++) {
            start[i] = slot;
            slot += end[i];
            mine += end[i];
            end[i] = start[i];
        }
        #pragma omp atomic
        total += mine;
        #pragma omp barrier
        if (total <= max_nonzeros) {
            for (int64_t r = 0; r < n; r++) {
                const float *xr = x + r * k;
                for (int64_t i = i0; i < i1; i++)
                    if (xr[i] != 0.f) {
                        offset[end[i]] = r * m;
                        weight[end[i]++] = xr[i];
                    }
            }
            for (int64_t j = 0; j < m; j += BLOCK) {
                const int w = (int)(m - j < BLOCK ? m - j : BLOCK);
                for (int64_t i = i0; i < i1; i++)
                    gather_sum(weight + start[i], offset + start[i], end[i] - start[i],
                               other + j, w, NULL, out + i * m + j);
            }
        }
    }
    free(offset); free(weight); free(start); free(end);
    return total > max_nonzeros;
}

/* Bernoulli draws for CD/PCD's Gibbs sweeps: out[i] = 1 if u_i < 2^16 p[i] else 0, with u_i the
 * i-th 16-bit quarter of the splitmix64 sequence started at seed (a counter-based stream: the
 * result does not depend on the number of threads). On-probability ceil(2^16 p) / 2^16. */
static inline uint64_t splitmix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

void pyro_deepgen_bernoulli16(const float *p, int64_t n, uint64_t seed, float *out, int num_threads)
{
    const int64_t pairs = n / 8; /* 8 draws = two 64-bit words per step */
    const __m256 scale = _mm256_set1_ps(65536.f), one = _mm256_set1_ps(1.f);
    #pragma omp parallel for schedule(static) num_threads(num_threads)
    for (int64_t b = 0; b < pairs; b++) {
        const uint64_t z0 = splitmix64(seed + (uint64_t)(2 * b + 1) * 0x9E3779B97F4A7C15ULL);
        const uint64_t z1 = splitmix64(seed + (uint64_t)(2 * b + 2) * 0x9E3779B97F4A7C15ULL);
        const __m128i u16 = _mm_set_epi64x((long long)z1, (long long)z0);
        const __m256 u = _mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(u16));
        const __m256 on = _mm256_cmp_ps(u, _mm256_mul_ps(_mm256_loadu_ps(p + 8 * b), scale),
                                        _CMP_LT_OQ);
        _mm256_storeu_ps(out + 8 * b, _mm256_and_ps(on, one));
    }
    for (int64_t i = 8 * pairs; i < n; i++) { /* the last n % 8 draws, from the same stream */
        const int64_t word = i / 4 + 1, lane = i % 4;
        const uint64_t z = splitmix64(seed + (uint64_t)word * 0x9E3779B97F4A7C15ULL);
        const float u = (float)((z >> (16 * lane)) & 0xFFFF);
        out[i] = u < p[i] * 65536.f ? 1.f : 0.f;
    }
}
