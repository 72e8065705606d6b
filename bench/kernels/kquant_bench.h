// Helpers of the K-quant kernel harnesses (kquant_gemm_harness.c, kquant_groups_harness.c): a
// monotonic clock, a comparator for medians, a seeded xorshift generator, and random Q4_K / Q6_K
// matrices with ordinary F16 scales.
#ifndef KQUANT_BENCH_H
#define KQUANT_BENCH_H

#include "sn_kernels.h"
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static unsigned long long rng = 88172645463325252ull;
static unsigned next(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (unsigned)rng;
}

/// `rows` random rows of `columns` (a multiple of 256) SN_Q4_K or SN_Q6_K weights, `*row_bytes` apart,
/// with scales of 1e-5 to 1e-2 (Q4_K's minimums 0 to 1e-2).
static uint8_t *kquant_random_matrix(int type, int rows, int columns, size_t *row_bytes) {
    const int nb = columns / 256;
    const size_t bb = type == SN_Q4_K ? 144 : 210;
    *row_bytes = (size_t)nb * bb;
    uint8_t *w = malloc((size_t)rows * *row_bytes);
    for (size_t i = 0; i < (size_t)rows * *row_bytes; i++) w[i] = (uint8_t)next();
    for (int r = 0; r < rows; r++)
        for (int b = 0; b < nb; b++) {
            uint8_t *x = w + r * *row_bytes + b * bb;
            const uint16_t d = _cvtss_sh((next() % 1000 + 1) * 1e-5f, 0), m = _cvtss_sh((next() % 1000) * 1e-5f, 0);
            if (type == SN_Q4_K) {
                memcpy(x, &d, 2);
                memcpy(x + 2, &m, 2);
            } else {
                memcpy(x + 208, &d, 2);
            }
        }
    return w;
}

#endif
