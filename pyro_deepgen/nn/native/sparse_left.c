/* Products with a mostly-zero left factor, for pyro_deepgen.nn.sparse_matmul (CPU).
 *
 *   rows:  out[r, :]  = beta * out[r, :] + alpha * sum_{i : x[r, i] != 0} x[r, i] * table[i, :]
 *          i.e. out = beta * out + alpha * x @ table,     x (n, k), table (k, m), out (n, m)
 *   cols:  out[i, :]  = beta * out[i, :] + alpha * sum_{r : x[r, i] != 0} x[r, i] * table[r, :]
 *          i.e. out = beta * out + alpha * x^T @ table,   x (n, k), table (n, m), out (k, m)
 *
 * All arrays are C-contiguous. Zeros of x are skipped, so the cost is O(nnz(x) * m) plus a scan
 * of x. beta == 0 overwrites out without reading it. Parallel over output rows with OpenMP
 * (num_threads from the caller: torch's intra-op thread count). Built and loaded by
 * pyro_deepgen/nn/native/__init__.py with ctypes.
 */
#include <stdint.h>

#define DEFINE_KERNELS(T, SUFFIX)                                                              \
static inline void axpy_##SUFFIX(int64_t m, T a, const T *restrict src, T *restrict dst) {     \
    if (a == (T)1) { for (int64_t j = 0; j < m; ++j) dst[j] += src[j]; }                        \
    else { for (int64_t j = 0; j < m; ++j) dst[j] += a * src[j]; }                              \
}                                                                                              \
static inline void scale_##SUFFIX(int64_t m, T beta, T *restrict dst) {                        \
    if (beta == (T)0) { for (int64_t j = 0; j < m; ++j) dst[j] = 0; }                           \
    else if (beta != (T)1) { for (int64_t j = 0; j < m; ++j) dst[j] *= beta; }                  \
}                                                                                              \
void sparse_left_rows_##SUFFIX(const T *x, int64_t n, int64_t k, const T *table, int64_t m,     \
                               T alpha, T beta, T *out, int num_threads) {                     \
    _Pragma("omp parallel for schedule(static) num_threads(num_threads)")                       \
    for (int64_t r = 0; r < n; ++r) {                                                          \
        T *dst = out + r * m;                                                                  \
        const T *xr = x + r * k;                                                               \
        scale_##SUFFIX(m, beta, dst);                                                          \
        for (int64_t i = 0; i < k; ++i)                                                        \
            if (xr[i] != (T)0) axpy_##SUFFIX(m, alpha * xr[i], table + i * m, dst);            \
    }                                                                                          \
}                                                                                              \
void sparse_left_cols_##SUFFIX(const T *x, int64_t n, int64_t k, const T *table, int64_t m,     \
                               T alpha, T beta, T *out, int num_threads) {                     \
    _Pragma("omp parallel for schedule(static) num_threads(num_threads)")                       \
    for (int64_t i = 0; i < k; ++i) {                                                          \
        T *dst = out + i * m;                                                                  \
        scale_##SUFFIX(m, beta, dst);                                                          \
        for (int64_t r = 0; r < n; ++r) {                                                      \
            T xv = x[r * k + i];                                                               \
            if (xv != (T)0) axpy_##SUFFIX(m, alpha * xv, table + r * m, dst);                  \
        }                                                                                      \
    }                                                                                          \
}

DEFINE_KERNELS(float, f32)
DEFINE_KERNELS(double, f64)

int sparse_left_abi_version(void) { return 1; }
