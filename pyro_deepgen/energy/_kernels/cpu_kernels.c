/* CPU kernels for RBM training, float32, x86-64 AVX2 + FMA: products with a mostly-zero left
 * factor (binary unit states) and 16-bit Bernoulli draws.
 *
 * Compiled on first use by pyro_deepgen/energy/_kernels/native.py and called through ctypes; see
 * pyro_deepgen/energy/_kernels/sparse_matmul.py and
 * pyro_deepgen.energy.rbm.bernoulli_sample_16bit for the
 * maths and the torch fallbacks.
 *
 *   rows:   out (n, m)  = bias + x (n, k) @ table (k, m)    (sums of the selected rows of table)
 *   rows_t: out (k, m)  = x (n, k)^T @ other (n, m)         (sums of the selected rows of other)
 *
 * Only the nonzeros of x are visited: they are listed first (8 entries of x per AVX2 compare),
 * then every selected row segment of table/other is added into registers. The m output columns
 * are cut into blocks, so that the block of the right factor read by one thread stays in its
 * cache: 64 floats for rows (a block of the tall table stays in L2), 32 for rows_t (a block of
 * the short other, n x 128 bytes, stays in L1). All matrices are row-major and contiguous.
 * Parallel with OpenMP (torch's own runtime when it is loaded).
 * Both return 0; 1 when x has more than max_nonzeros nonzeros (nothing is written: the caller
 * takes the dense product); -1 when out of memory.
 */
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>

/* The nonzeros of x[lo:hi]: their indices to idx and values to val; returns their number. */
static int64_t list_nonzeros(const float *x, int64_t lo, int64_t hi, int32_t *idx, float *val)
{
    int64_t c = 0, i = lo;
    const __m256 zero = _mm256_setzero_ps();
    for (; i + 8 <= hi; i += 8) {
        unsigned bits = (unsigned)_mm256_movemask_ps(
            _mm256_cmp_ps(_mm256_loadu_ps(x + i), zero, _CMP_NEQ_UQ));
        while (bits) {
            const int b = __builtin_ctz(bits);
            idx[c] = (int32_t)(i + b);
            val[c++] = x[i + b];
            bits &= bits - 1;
        }
    }
    for (; i < hi; i++)
        if (x[i] != 0.f) {
            idx[c] = (int32_t)i;
            val[c++] = x[i];
        }
    return c;
}

/* out[0:w] = init[0:w] (or 0) + sum_t val[t] * base[idx[t] * stride + 0:w], 0 < w <= 64 */
static inline void gather_sum(const int32_t *idx, const float *val, int64_t count, const float *base,
                              int64_t stride, int w, const float *init, float *out)
{
    __m256 acc[8];
    const int full = w / 8, rest = w % 8, regs = full + (rest > 0);
    int32_t lanes[8];
    for (int l = 0; l < 8; l++) lanes[l] = l < rest ? -1 : 0;
    const __m256i mask = _mm256_loadu_si256((const __m256i *)lanes);
    for (int r = 0; r < regs; r++) {
        if (!init) acc[r] = _mm256_setzero_ps();
        else if (r < full) acc[r] = _mm256_loadu_ps(init + 8 * r);
        else acc[r] = _mm256_maskload_ps(init + 8 * r, mask);
    }
    if (full == 8) { /* the common case, unrolled by the compiler */
        for (int64_t t = 0; t < count; t++) {
            const float *p = base + idx[t] * stride;
            const __m256 s = _mm256_set1_ps(val[t]);
            for (int r = 0; r < 8; r++)
                acc[r] = _mm256_fmadd_ps(s, _mm256_loadu_ps(p + 8 * r), acc[r]);
        }
    } else {
        for (int64_t t = 0; t < count; t++) {
            const float *p = base + idx[t] * stride;
            const __m256 s = _mm256_set1_ps(val[t]);
            for (int r = 0; r < full; r++)
                acc[r] = _mm256_fmadd_ps(s, _mm256_loadu_ps(p + 8 * r), acc[r]);
            if (rest)
                acc[full] = _mm256_fmadd_ps(s, _mm256_maskload_ps(p + 8 * full, mask), acc[full]);
        }
    }
    for (int r = 0; r < full; r++) _mm256_storeu_ps(out + 8 * r, acc[r]);
    if (rest) _mm256_maskstore_ps(out + 8 * full, mask, acc[full]);
}

/* out[0:32] = sum_t val[t] * base[idx[t] * stride + 0:32], with two sets of 4 accumulators
 * (even and odd t), which halves the FMA dependency chains */
static inline void gather_sum32(const int32_t *idx, const float *val, int64_t count,
                                const float *base, int64_t stride, float *out)
{
    __m256 a[4], b[4];
    for (int r = 0; r < 4; r++) a[r] = b[r] = _mm256_setzero_ps();
    int64_t t = 0;
    for (; t + 1 < count; t += 2) {
        const float *p = base + idx[t] * stride, *q = base + idx[t + 1] * stride;
        const __m256 s = _mm256_set1_ps(val[t]), u = _mm256_set1_ps(val[t + 1]);
        for (int r = 0; r < 4; r++) {
            a[r] = _mm256_fmadd_ps(s, _mm256_loadu_ps(p + 8 * r), a[r]);
            b[r] = _mm256_fmadd_ps(u, _mm256_loadu_ps(q + 8 * r), b[r]);
        }
    }
    if (t < count) {
        const float *p = base + idx[t] * stride;
        const __m256 s = _mm256_set1_ps(val[t]);
        for (int r = 0; r < 4; r++) a[r] = _mm256_fmadd_ps(s, _mm256_loadu_ps(p + 8 * r), a[r]);
    }
    for (int r = 0; r < 4; r++) _mm256_storeu_ps(out + 8 * r, _mm256_add_ps(a[r], b[r]));
}

int pyro_deepgen_sparse_rows(const float *x, int64_t n, int64_t k, const float *table, int64_t m,
                             const float *bias, float *out, int64_t max_nonzeros, int num_threads)
{
    int64_t total = 0;
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)(n * k + 1));
    float *val = malloc(sizeof(float) * (size_t)(n * k + 1));
    int64_t *count = malloc(sizeof(int64_t) * (size_t)(n + 1));
    if (!idx || !val || !count) {
        free(idx); free(val); free(count);
        return -1;
    }
    #pragma omp parallel num_threads(num_threads)
    {
        /* row r's nonzeros: entries [r k, r k + count[r]) */
        #pragma omp for schedule(static) reduction(+:total)
        for (int64_t r = 0; r < n; r++) {
            count[r] = list_nonzeros(x + r * k, 0, k, idx + r * k, val + r * k);
            total += count[r];
        } /* implicit barrier: total is complete */
        if (total <= max_nonzeros) {
            const int threads = omp_get_num_threads(), me = omp_get_thread_num();
            const int64_t r0 = n * me / threads, r1 = n * (me + 1) / threads;
            for (int64_t j = 0; j < m; j += 64) {
                const int w = (int)(m - j < 64 ? m - j : 64);
                for (int64_t r = r0; r < r1; r++)
                    gather_sum(idx + r * k, val + r * k, count[r], table + j, m, w,
                               bias ? bias + j : NULL, out + r * m + j);
            }
        }
    }
    free(idx); free(val); free(count);
    return total > max_nonzeros;
}

int pyro_deepgen_sparse_rows_t(const float *x, int64_t n, int64_t k, const float *other, int64_t m,
                               float *out, int64_t max_nonzeros, int num_threads)
{
    int64_t total = 0;
    /* per thread, in its slice [n i0, n i1) of each array: the row-wise lists of its columns'
       nonzeros (scratch), then the column-wise lists (row index and value) */
    int32_t *scratch_idx = malloc(sizeof(int32_t) * (size_t)(n * k + 1));
    float *scratch_val = malloc(sizeof(float) * (size_t)(n * k + 1));
    int32_t *rows = malloc(sizeof(int32_t) * (size_t)(n * k + 1));
    float *val = malloc(sizeof(float) * (size_t)(n * k + 1));
    int64_t *start = malloc(sizeof(int64_t) * (size_t)(k + 1));
    int64_t *fill = malloc(sizeof(int64_t) * (size_t)(k + 1));
    int64_t *row_count = malloc(sizeof(int64_t) * (size_t)(n * num_threads + 1));
    if (!scratch_idx || !scratch_val || !rows || !val || !start || !fill || !row_count) {
        free(scratch_idx); free(scratch_val); free(rows); free(val); free(start); free(fill);
        free(row_count);
        return -1;
    }
    #pragma omp parallel num_threads(num_threads)
    {
        const int threads = omp_get_num_threads(), me = omp_get_thread_num();
        const int64_t i0 = k * me / threads, i1 = k * (me + 1) / threads;
        int32_t *my_idx = scratch_idx + n * i0;
        float *my_val = scratch_val + n * i0;
        int64_t *my_count = row_count + n * me;
        int64_t listed = 0;
        for (int64_t i = i0; i < i1; i++) fill[i] = 0;
        for (int64_t r = 0; r < n; r++) { /* row-wise lists, and the count of each column */
            my_count[r] = list_nonzeros(x + r * k, i0, i1, my_idx + listed, my_val + listed);
            for (int64_t t = listed; t < listed + my_count[r]; t++) fill[my_idx[t]]++;
            listed += my_count[r];
        }
        int64_t slot = n * i0;
        for (int64_t i = i0; i < i1; i++) {
            start[i] = slot;
            slot += fill[i];
            fill[i] = start[i];
        }
        #pragma omp atomic
        total += listed;
        #pragma omp barrier
        if (total <= max_nonzeros) {
            for (int64_t r = 0, t = 0; r < n; r++) /* column-wise lists */
                for (const int64_t stop = t + my_count[r]; t < stop; t++) {
                    const int64_t q = fill[my_idx[t]]++;
                    rows[q] = (int32_t)r;
                    val[q] = my_val[t];
                }
            int64_t j = 0;
            for (; j + 32 <= m; j += 32)
                for (int64_t i = i0; i < i1; i++)
                    gather_sum32(rows + start[i], val + start[i], fill[i] - start[i], other + j,
                                 m, out + i * m + j);
            if (j < m)
                for (int64_t i = i0; i < i1; i++)
                    gather_sum(rows + start[i], val + start[i], fill[i] - start[i], other + j, m,
                               (int)(m - j), NULL, out + i * m + j);
        }
    }
    free(scratch_idx); free(scratch_val); free(rows); free(val); free(start); free(fill);
    free(row_count);
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

/* exp(x) for x <= 0 (Cephes' expf: x = n ln2 + r, a degree-5 polynomial for e^r, 2^n through the
 * exponent bits); x below -87 gives about 1.6e-38 rather than a denormal. */
static inline __m256 exp_nonpositive(__m256 x)
{
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n),
                                                         _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

/* log(1 + y) for y in [0, 1] (Cephes' logf on z = 1 + y in [1, 2]: z = 2^e m with m in
 * [sqrt(1/2), sqrt(2)), a degree-9 polynomial in m - 1); relative error about 1e-7. */
static inline __m256 log1p_unit(__m256 y)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 z = _mm256_add_ps(one, y);
    /* z in [1, 2]: e = 1 and m = z / 2 where z >= sqrt(2), else e = 0 and m = z */
    const __m256 big = _mm256_cmp_ps(z, _mm256_set1_ps(1.41421356237f), _CMP_GE_OQ);
    const __m256 e = _mm256_and_ps(big, one);
    const __m256 m = _mm256_blendv_ps(z, _mm256_mul_ps(z, _mm256_set1_ps(0.5f)), big);
    const __m256 t = _mm256_sub_ps(m, one);
    __m256 p = _mm256_set1_ps(7.0376836292e-2f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.1514610310e-1f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.1676998740e-1f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.2420140846e-1f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.4249322787e-1f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.6668057665e-1f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(2.0000714765e-1f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-2.4999993993e-1f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(3.3333331174e-1f));
    const __m256 t2 = _mm256_mul_ps(t, t);
    p = _mm256_mul_ps(_mm256_mul_ps(p, t), t2);          /* t^3 P(t) */
    p = _mm256_fnmadd_ps(t2, _mm256_set1_ps(0.5f), p);   /* - t^2 / 2 */
    /* + t + e ln2 (ln2 split in two parts for accuracy) */
    p = _mm256_fmadd_ps(e, _mm256_set1_ps(-2.12194440e-4f), p);
    p = _mm256_add_ps(p, t);
    const __m256 log_z = _mm256_fmadd_ps(e, _mm256_set1_ps(0.693359375f), p);
    /* Kahan's correction for the rounding of z = 1 + y: log1p(y) = log(z) y / (z - 1), and y
       itself where z rounds to 1 */
    const __m256 u = _mm256_sub_ps(z, one);
    const __m256 rounded = _mm256_cmp_ps(u, _mm256_setzero_ps(), _CMP_EQ_OQ);
    const __m256 scaled = _mm256_mul_ps(log_z, _mm256_div_ps(y, _mm256_blendv_ps(u, one, rounded)));
    return _mm256_blendv_ps(scaled, y, rounded);
}

/* p = sigmoid(x) and, for every row of x (n, h), out_rows[r] = sum_j softplus(x[r, j]), from one
 * exp(-|x|) per entry: sigmoid(x) = 1 / (1 + e) or e / (1 + e), softplus(x) = max(x, 0) +
 * log(1 + e). NaN entries give NaN in both. p may be x (in place). */
void pyro_deepgen_sigmoid_softplus(const float *x, int64_t n, int64_t h, float *p,
                                   double *out_rows, int num_threads)
{
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    const __m256 sign = _mm256_set1_ps(-0.0f);
    #pragma omp parallel for schedule(static) num_threads(num_threads)
    for (int64_t r = 0; r < n; r++) {
        const float *xr = x + r * h;
        float *pr = p + r * h;
        __m256 acc = zero;
        double tail = 0.0;
        int64_t j = 0;
        for (; j + 8 <= h; j += 8) {
            const __m256 v = _mm256_loadu_ps(xr + j);
            const __m256 e = exp_nonpositive(_mm256_or_ps(v, sign)); /* exp(-|x|) */
            const __m256 inv = _mm256_div_ps(one, _mm256_add_ps(one, e));
            const __m256 nonneg = _mm256_cmp_ps(v, zero, _CMP_GE_OQ);
            const __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
            const __m256 s = _mm256_blendv_ps(_mm256_mul_ps(e, inv), inv, nonneg);
            const __m256 sp = _mm256_add_ps(_mm256_max_ps(v, zero), log1p_unit(e));
            _mm256_storeu_ps(pr + j, _mm256_blendv_ps(s, v, nan));
            acc = _mm256_add_ps(acc, _mm256_blendv_ps(sp, v, nan));
        }
        for (; j < h; j++) {
            const float v = xr[j];
            const float e = expf(-fabsf(v));
            pr[j] = v >= 0.f ? 1.f / (1.f + e) : e / (1.f + e);
            tail += (v > 0.f ? v : 0.f) + log1pf(e);
            if (v != v) { pr[j] = v; tail += v; }
        }
        float lanes[8];
        _mm256_storeu_ps(lanes, acc);
        double sum = tail;
        for (int l = 0; l < 8; l++) sum += lanes[l];
        out_rows[r] = sum;
    }
}
