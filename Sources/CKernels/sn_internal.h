// Helpers shared by the C kernels (kernels.c, q32.c, kquants.c, vnni.c); internal to CKernels, not
// part of its interface (include/sn_kernels.h). x86-64 only: include it inside `#if defined(__x86_64__)`.
#ifndef SN_INTERNAL_H
#define SN_INTERNAL_H

#include "sn_kernels.h"

#include <immintrin.h>
#include <string.h>

#define SN_AVX2_TARGET __attribute__((target("avx2,fma,f16c")))
#define SN_AVX2_INLINE static inline __attribute__((always_inline)) SN_AVX2_TARGET

/// The F16 value at `p` (any alignment) as a float.
SN_AVX2_INLINE float sn_half(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/// ggml's hsum_float_8: ((x0+x4) + (x2+x6)) + ((x1+x5) + (x3+x7)).
SN_AVX2_INLINE float sn_hsum8(__m256 x) {
    __m128 r = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

/// Where row r's blocks are in a packed matrix (`sn_pack_rows`): block b's F16 scale (Q4_1: then
/// its minimum) at `d + b * stride`, its quants at `q + b * stride`. The quants of a Q4_1 row in
/// a group are the low (`shift` 0) or high (4) nibbles of 32 bytes it shares with its neighbour;
/// those of a tail row (after the last whole group) are ggml's 16 bytes (`shift` -1).
typedef struct {
    const uint8_t *d;
    const uint8_t *q;
    size_t stride;
    int shift;
    /// For the prompt paths: block b's scale (Q4_1: then minimum) as floats at `sc + 8 * b`.
    const float *sc;
} sn_row;

SN_AVX2_INLINE sn_row sn_row_at(const sn_matmul_job *job, int r) {
    const int q4 = job->type == SN_Q4_1;
    if (r < job->rows / 4 * 4) {
        const uint8_t *g = job->w + (size_t)(r / 4) * 4 * job->row_bytes;
        const int j = r % 4;
        if (q4) return (sn_row){g + 4 * j, g + 16 + 32 * (j / 2), 80, 4 * (j & 1), NULL};
        return (sn_row){g + 2 * j, g + 8 + 32 * j, 136, 0, NULL};
    }
    const uint8_t *row = job->w + (size_t)r * job->row_bytes;
    return (sn_row){row, row + (q4 ? 4 : 2), q4 ? 20 : 34, -1, NULL};
}

/// The scales of rows `[g, g + 4)` (as far as the matrix goes) as floats, block b's at
/// `tab + 8 * b` (Q4_1: `d, m` of each row; Q8_0: `d` of each row), and the rows pointing at them.
SN_AVX2_INLINE void sn_group_scales(const sn_matmul_job *job, int g, float *tab, sn_row *rows) {
    const int q4 = job->type == SN_Q4_1;
    const int nb = job->blocks;
    const int n = job->rows - g < 4 ? job->rows - g : 4;
    for (int j = 0; j < n; j++) rows[j] = sn_row_at(job, g + j);
    if (g + 4 <= job->rows / 4 * 4) {
        const uint8_t *base = job->w + (size_t)g * job->row_bytes;
        // The next group, while this one is computed: its rows are read one after another, each
        // striding through the group, which the hardware prefetcher does not follow well.
        if (g + 8 <= job->rows)
            for (size_t off = 0; off < 4 * job->row_bytes; off += 64)
                _mm_prefetch((const char *)base + 4 * job->row_bytes + off, _MM_HINT_T0);
        for (int b = 0; b < nb; b++) {
            if (q4)
                _mm256_storeu_ps(tab + 8 * b, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(base + (size_t)b * 80))));
            else
                _mm_storeu_ps(tab + 8 * b, _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(base + (size_t)b * 136))));
        }
        for (int j = 0; j < 4; j++) rows[j].sc = tab + (q4 ? 2 * j : j);
    } else {
        for (int j = 0; j < n; j++) {
            for (int b = 0; b < nb; b++) {
                const uint8_t *d = rows[j].d + (size_t)b * rows[j].stride;
                tab[8 * b + 2 * j] = sn_half(d);
                tab[8 * b + 2 * j + 1] = q4 ? sn_half(d + 2) : 0;
            }
            rows[j].sc = tab + 2 * j;
        }
    }
}

/// `sn_pack_rows` and `sn_unpack_row` for SN_Q4_0 (q32.c): groups of eight rows, `scratch` of
/// `8 * row_bytes` bytes.
void sn_pack_q4_0(uint8_t *w, size_t row_bytes, int rows, int blocks, uint8_t *scratch);
void sn_unpack_q4_0(const uint8_t *w, size_t row_bytes, int rows, int blocks, int r, uint8_t *out);

/// Defines NAME: one activation against a packed group of four Q4_1 rows (the decode path; kernels.c's
/// `group_q4_1`, vnni.c's `sn_group_q4_1_vnni`). The group's eight F16 scales and minimums convert
/// in one instruction, the four rows' `m_w * s_a` sums advance in one vector FMA (lanes 1, 3, 5, 7;
/// the products are exact, so the FMA is the scalar kernel's multiply-then-add), and each pair of
/// rows' quants is one 32-byte load. `das` holds the activation's `d, s` per block as floats.
/// DOT(u, qy): the eight lane sums of u8 x i8 products as floats; SCALE(dd, mem, k): lane k of the
/// eight d_w * d_a values `dd` (also stored at `mem`) in every lane.
#define SN_GROUP_Q4_1(NAME, QUALIFIERS, DOT, SCALE)                                                        \
    QUALIFIERS void NAME(const uint8_t *g, int blocks, const float *das, const uint8_t *a, float *out) {   \
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();                                      \
        __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();                                      \
        __m256 summs = _mm256_setzero_ps();                                                                 \
        const __m256i low = _mm256_set1_epi8(0x0f);                                                         \
        float mem[8] __attribute__((aligned(32)));                                                          \
        for (int b = 0; b < blocks; b++) {                                                                  \
            const uint8_t *gb = g + (size_t)b * 80;                                                         \
            _mm_prefetch((const char *)gb + 2048, _MM_HINT_T0); /* kernels.c: SN_PREFETCH */                  \
            const __m256 da = _mm256_broadcast_ss(das + 2 * b), sa = _mm256_broadcast_ss(das + 2 * b + 1);  \
            const __m256i qy = _mm256_loadu_si256((const __m256i *)(a + (size_t)b * 36 + 4));               \
            const __m256 dm = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)gb));                        \
            summs = _mm256_fmadd_ps(dm, sa, summs);                                                         \
            const __m256 dd = _mm256_mul_ps(dm, da);                                                        \
            _mm256_store_ps(mem, dd);                                                                       \
            const __m256i v01 = _mm256_loadu_si256((const __m256i *)(gb + 16));                             \
            const __m256i v23 = _mm256_loadu_si256((const __m256i *)(gb + 48));                             \
            acc0 = _mm256_fmadd_ps(SCALE(dd, mem, 0), DOT(_mm256_and_si256(v01, low), qy), acc0);           \
            acc1 = _mm256_fmadd_ps(SCALE(dd, mem, 2), DOT(_mm256_and_si256(_mm256_srli_epi16(v01, 4), low), qy), acc1); \
            acc2 = _mm256_fmadd_ps(SCALE(dd, mem, 4), DOT(_mm256_and_si256(v23, low), qy), acc2);           \
            acc3 = _mm256_fmadd_ps(SCALE(dd, mem, 6), DOT(_mm256_and_si256(_mm256_srli_epi16(v23, 4), low), qy), acc3); \
        }                                                                                                   \
        float s[8];                                                                                         \
        _mm256_storeu_ps(s, summs);                                                                         \
        out[0] = sn_hsum8(acc0) + s[1];                                                                     \
        out[1] = sn_hsum8(acc1) + s[3];                                                                     \
        out[2] = sn_hsum8(acc2) + s[5];                                                                     \
        out[3] = sn_hsum8(acc3) + s[7];                                                                     \
    }

/// `group_q4_1` and `group_q8_0` (kernels.c's decode path: one activation against a packed group of
/// four rows) with AVX512-VNNI (vnni.c), bit-identical; `decode_rows` calls them when `sn_use_vnni()`.
void sn_group_q4_1_vnni(const uint8_t *g, int blocks, const float *das, const uint8_t *a, float *out);
void sn_group_q8_0_vnni(const uint8_t *g, int blocks, const float *das, const uint8_t *a, float *out);

#endif
