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

/// `sn_hsum8` of eight vectors at once: lane k of the result is `sn_hsum8(x[k])`, bit for bit. The
/// same additions of the same pairs (only their operands' order differs, and IEEE addition is
/// commutative), done for eight sums per instruction: 14 shuffles and 7 additions instead of 48
/// operations. Step 1 pairs x[k] with x[k + 4] so that the sums come out in lane order.
SN_AVX2_INLINE __m256 sn_hsum8x8(const __m256 *x) {
    __m256 r[4];
    for (int k = 0; k < 4; k++)  // [x[k].lo + x[k].hi | x[k+4].lo + x[k+4].hi]: r0..r3 of each
        r[k] = _mm256_add_ps(_mm256_permute2f128_ps(x[k], x[k + 4], 0x31), _mm256_permute2f128_ps(x[k], x[k + 4], 0x20));
    // [r0 + r2, r1 + r3] of x[k], x[k+1] (low half) and x[k+4], x[k+5] (high half), k = 0, 2.
    const __m256 s01 = _mm256_add_ps(_mm256_shuffle_ps(r[0], r[1], _MM_SHUFFLE(1, 0, 1, 0)),
                                     _mm256_shuffle_ps(r[0], r[1], _MM_SHUFFLE(3, 2, 3, 2)));
    const __m256 s23 = _mm256_add_ps(_mm256_shuffle_ps(r[2], r[3], _MM_SHUFFLE(1, 0, 1, 0)),
                                     _mm256_shuffle_ps(r[2], r[3], _MM_SHUFFLE(3, 2, 3, 2)));
    return _mm256_add_ps(_mm256_shuffle_ps(s01, s23, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm256_shuffle_ps(s01, s23, _MM_SHUFFLE(3, 1, 3, 1)));
}

/// `sn_hsum8` of four vectors at once (see `sn_hsum8x8`): lane k of the result is `sn_hsum8(x[k])`,
/// bit for bit.
SN_AVX2_INLINE __m128 sn_hsum8x4(__m256 x0, __m256 x1, __m256 x2, __m256 x3) {
    // [r0..r3 of x0 | of x2] and [of x1 | of x3]
    const __m256 r02 = _mm256_add_ps(_mm256_permute2f128_ps(x0, x2, 0x31), _mm256_permute2f128_ps(x0, x2, 0x20));
    const __m256 r13 = _mm256_add_ps(_mm256_permute2f128_ps(x1, x3, 0x31), _mm256_permute2f128_ps(x1, x3, 0x20));
    // [r0 + r2, r1 + r3] of x0, x1 | of x2, x3
    const __m256 s = _mm256_add_ps(_mm256_shuffle_ps(r02, r13, _MM_SHUFFLE(1, 0, 1, 0)),
                                   _mm256_shuffle_ps(r02, r13, _MM_SHUFFLE(3, 2, 3, 2)));
    const __m128 lo = _mm256_castps256_ps128(s), hi = _mm256_extractf128_ps(s, 1);
    return _mm_add_ps(_mm_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0)), _mm_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1)));
}

/// The end of a Q4_1 prompt tile of R (1 or 2) rows by eight activations: `out[t * out_stride + r]
/// = sn_hsum8(acc[r][t]) + lane t of add[r]`, bit for bit, the sums eight at a time (`sn_hsum8x8`)
/// and two rows' outputs stored together.
SN_AVX2_INLINE void sn_store_tile_sums(int R, __m256 acc[][8], const __m256 *add, float *out, size_t out_stride) {
    __m256 sum[2];
    for (int r = 0; r < R; r++) sum[r] = _mm256_add_ps(sn_hsum8x8(acc[r]), add[r]);
    if (R == 2) {
        const __m256 lo = _mm256_unpacklo_ps(sum[0], sum[1]);  // activations 0, 1 | 4, 5, two rows each
        const __m256 hi = _mm256_unpackhi_ps(sum[0], sum[1]);  // activations 2, 3 | 6, 7
        const __m128 pairs[4] = {_mm256_castps256_ps128(lo), _mm256_castps256_ps128(hi),
                                 _mm256_extractf128_ps(lo, 1), _mm256_extractf128_ps(hi, 1)};
        for (int k = 0; k < 4; k++) {
            _mm_storel_pi((__m64 *)(out + (size_t)(2 * k) * out_stride), pairs[k]);
            _mm_storeh_pi((__m64 *)(out + (size_t)(2 * k + 1) * out_stride), pairs[k]);
        }
        return;
    }
    float s[8];
    _mm256_storeu_ps(s, sum[0]);
    for (int t = 0; t < 8; t++) out[(size_t)t * out_stride] = s[t];
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
        /* out[j] = sn_hsum8(acc_j) + lane 2j + 1 of summs (row j's minimum term) */                     \
        const __m128 m = _mm_shuffle_ps(_mm256_castps256_ps128(summs), _mm256_extractf128_ps(summs, 1),      \
                                        _MM_SHUFFLE(3, 1, 3, 1));                                           \
        _mm_storeu_ps(out, _mm_add_ps(sn_hsum8x4(acc0, acc1, acc2, acc3), m));                              \
    }

/// `group_q4_1` and `group_q8_0` (kernels.c's decode path: one activation against a packed group of
/// four rows) with AVX512-VNNI (vnni.c), bit-identical; `decode_rows` calls them when `sn_use_vnni()`.
void sn_group_q4_1_vnni(const uint8_t *g, int blocks, const float *das, const uint8_t *a, float *out);
void sn_group_q8_0_vnni(const uint8_t *g, int blocks, const float *das, const uint8_t *a, float *out);

/// `CALL(N)` with N the constant 1..8 equal to `T` (1 for anything else), so that a tile's loops over
/// its activations unroll into registers (the sixteen-row groups, kquant_groups.c and q4_1_groups.c).
#define SN_TILE_CASES(CALL)              \
    switch (T) {                         \
    case 8: CALL(8); break;              \
    case 7: CALL(7); break;              \
    case 6: CALL(6); break;              \
    case 5: CALL(5); break;              \
    case 4: CALL(4); break;              \
    case 3: CALL(3); break;              \
    case 2: CALL(2); break;              \
    default: CALL(1); break;             \
    }

#endif
