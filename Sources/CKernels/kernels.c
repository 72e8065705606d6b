// SecureNode's innermost CPU kernels (see include/sn_kernels.h for the contract of each).
//
// Each function is compiled for AVX2+FMA+F16C with a target attribute, so the rest of the
// program keeps the toolchain's baseline; `sn_kernels_available` says whether they may be called.
#include "sn_kernels.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>

#include "sn_internal.h"

#define SN_TARGET __attribute__((target("avx2,fma,f16c")))
#define SN_INLINE static inline __attribute__((always_inline)) SN_TARGET

int sn_kernels_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

int sn_cpu_has_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
}

// MARK: - Helpers

SN_INLINE uint16_t f32_to_f16(float x) {
    return (uint16_t)_cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT);
}

/// GCC's expansion of _mm512_reduce_add_ps over lanes lo (0..7) and hi (8..15):
/// a_i = x_{i+8} + x_i, t_i = a_{i+4} + a_i, (t0 + t2) + (t1 + t3).
SN_INLINE float reduce16(__m256 lo, __m256 hi) {
    __m256 a = _mm256_add_ps(hi, lo);
    __m128 t = _mm_add_ps(_mm256_extractf128_ps(a, 1), _mm256_castps256_ps128(a));
    __m128 u = _mm_add_ps(t, _mm_movehl_ps(t, t));   // t0+t2, t1+t3
    u = _mm_add_ss(u, _mm_movehdup_ps(u));             // (t0+t2) + (t1+t3)
    return _mm_cvtss_f32(u);
}

/// The profile's horizontal sum of `width` floats at p.
SN_INLINE float hsum_width(const float *p, int width) {
    if (width == 8) return sn_hsum8(_mm256_loadu_ps(p));
    return reduce16(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8));
}

/// ggml's AVX2 ggml_v_expf (see Kernels' GGMLMath.expf).
SN_INLINE __m256 expf_avx2(__m256 x) {
    const __m256 r = _mm256_set1_ps(0x1.8p23f);
    const __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), r);
    const __m256 n = _mm256_sub_ps(z, r);
    const __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f),
                                      _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
    const __m256i e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
    const __m256 k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_castps_si256(_mm256_set1_ps(1))));
    const __m256 absn = _mm256_andnot_ps(_mm256_set1_ps(-0.f), n);
    const __m256 c = _mm256_cmp_ps(absn, _mm256_set1_ps(126), _CMP_GT_OQ);
    const __m256 u = _mm256_mul_ps(b, b);
    const __m256 j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f)), u,
                        _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f))),
        u, _mm256_mul_ps(_mm256_set1_ps(0x1.ffffecp-1f), b));
    if (!_mm256_movemask_ps(c)) return _mm256_fmadd_ps(j, k, k);
    const __m256i g = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ)),
                                       _mm256_set1_epi32((int)0x82000000u));
    const __m256 s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f000000)));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
    const __m256 d = _mm256_cmp_ps(absn, _mm256_set1_ps(192), _CMP_GT_OQ);
    return _mm256_or_ps(
        _mm256_and_ps(d, _mm256_mul_ps(s1, s1)),
        _mm256_andnot_ps(d, _mm256_or_ps(_mm256_and_ps(c, _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1)),
                                         _mm256_andnot_ps(c, _mm256_fmadd_ps(k, j, k)))));
}

/// ggml's AVX-512 ggml_v_expf, eight lanes at a time (see Kernels' GGMLMath.expf512): the same
/// polynomial with the 1 folded in, then scalef(j, n) = j * 2^n with one rounding, emulated as
/// (j * 2^(n -+ 100)) * 2^(+-100) (the first product is exact and normal); |n| > 192 saturates.
SN_INLINE __m256 expf_avx512(__m256 x) {
    const __m256 r = _mm256_set1_ps(0x1.8p23f);
    const __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), r);
    const __m256 n = _mm256_sub_ps(z, r);
    const __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f),
                                      _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
    const __m256 u = _mm256_mul_ps(b, b);
    const __m256 j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f)), u,
                        _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f))),
        u, _mm256_fmadd_ps(_mm256_set1_ps(0x1.ffffecp-1f), b, _mm256_set1_ps(1.0f)));
    const __m256 negative = _mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LT_OQ);
    const __m256 absn = _mm256_andnot_ps(_mm256_set1_ps(-0.f), n);
    const __m256 big = _mm256_cmp_ps(absn, _mm256_set1_ps(192), _CMP_GT_OQ);
    // Clamp n so the integer conversion is defined for every lane (saturating lanes are replaced below).
    const __m256 nc = _mm256_min_ps(_mm256_max_ps(n, _mm256_set1_ps(-192)), _mm256_set1_ps(192));
    __m256i ni = _mm256_cvttps_epi32(nc);
    const __m256i adjust = _mm256_blendv_epi8(_mm256_set1_epi32(-100), _mm256_set1_epi32(100), _mm256_castps_si256(negative));
    ni = _mm256_add_epi32(ni, adjust);
    const __m256 scale1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(ni, _mm256_set1_epi32(127)), 23));
    const __m256 scale2 = _mm256_blendv_ps(_mm256_set1_ps(0x1p100f), _mm256_set1_ps(0x1p-100f), negative);
    __m256 res = _mm256_mul_ps(_mm256_mul_ps(j, scale1), scale2);
    // NaN input: n is NaN, the compares are false, and j (hence res) is NaN already.
    const __m256 saturated = _mm256_blendv_ps(_mm256_set1_ps(INFINITY), _mm256_setzero_ps(),
                                              _mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ));
    return _mm256_blendv_ps(res, saturated, big);
}

SN_INLINE __m256 expf_profile(__m256 x, int width) {
    return width == 8 ? expf_avx2(x) : expf_avx512(x);
}

SN_INLINE __m256 f16_round8(__m256 x) {
    return _mm256_cvtph_ps(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
}

SN_INLINE float f16_round1(float x) {
    return _cvtsh_ss(f32_to_f16(x));
}

// MARK: - Quantized matrix products

/// Lane sums of u8 x i8 products, four consecutive bytes per i32 lane, as floats.
SN_INLINE __m256 sum_u8_i8(__m256i ux, __m256i sy) {
    const __m256i dot = _mm256_maddubs_epi16(ux, sy);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(dot, _mm256_set1_epi16(1)));
}

/// Block b of a Q4_1 row: its 32 quants (0..15), element i in byte i. `kind`: the row's `shift`
/// when the caller knows it (a constant), else 8.
SN_INLINE __m256i q4_quants_k(sn_row row, int b, int kind) {
    const __m256i low = _mm256_set1_epi8(0x0f);
    const uint8_t *p = row.q + (size_t)b * row.stride;
    if (kind == 0) return _mm256_and_si256(_mm256_loadu_si256((const __m256i *)p), low);
    if (kind == 4) return _mm256_and_si256(_mm256_srli_epi16(_mm256_loadu_si256((const __m256i *)p), 4), low);
    if (kind < 0 || row.shift < 0) {
        const __m128i packed = _mm_loadu_si128((const __m128i *)p);
        return _mm256_and_si256(
            _mm256_insertf128_si256(_mm256_castsi128_si256(packed), _mm_srli_epi16(packed, 4), 1), low);
    }
    return _mm256_and_si256(_mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)p), _mm_cvtsi32_si128(row.shift)), low);
}

SN_INLINE __m256i q4_quants(sn_row row, int b) { return q4_quants_k(row, b, 8); }

/// A tile of R rows by T activations of Q4_1 x Q8_1 (`pair`: the two rows of a packed pair,
/// whose quants are one load).
SN_INLINE void tile_q4_1_p(int R, int T, int pair, const sn_row *rows, int blocks,
                         const uint8_t *a, size_t a_stride, float *out, size_t out_stride) {
    __m256 acc[4][4];
    float summs[4][4];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) { acc[r][t] = _mm256_setzero_ps(); summs[r][t] = 0; }
    for (int b = 0; b < blocks; b++) {
        float da[4], sa[4];
        __m256i qy[4];
        for (int t = 0; t < T; t++) {
            const uint8_t *ab = a + t * a_stride + (size_t)b * 36;
            da[t] = sn_half(ab);
            sa[t] = sn_half(ab + 2);
            qy[t] = _mm256_loadu_si256((const __m256i *)(ab + 4));
        }
        __m256 dav[4];
        for (int t = 0; t < T; t++) dav[t] = _mm256_set1_ps(da[t]);
        for (int r = 0; r < R; r++) {
            const __m256 dw = _mm256_broadcast_ss(rows[r].sc + 8 * b);
            const float mw = rows[r].sc[8 * b + 1];
            const __m256i qx = pair ? q4_quants_k(rows[0], b, 4 * r) : q4_quants(rows[r], b);
            for (int t = 0; t < T; t++) {
                const __m256 d = _mm256_mul_ps(dw, dav[t]);
                acc[r][t] = _mm256_fmadd_ps(d, sum_u8_i8(qx, qy[t]), acc[r][t]);
                summs[r][t] += mw * sa[t];  // both F16 values: the product is exact
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) out[t * out_stride + r] = sn_hsum8(acc[r][t]) + summs[r][t];
}

SN_INLINE void tile_q4_1(int R, int T, const sn_row *rows, int blocks,
                         const uint8_t *a, size_t a_stride, float *out, size_t out_stride) {
    if (R == 2 && rows[0].shift == 0 && rows[1].shift == 4)
        tile_q4_1_p(2, T, 1, rows, blocks, a, a_stride, out, out_stride);
    else
        tile_q4_1_p(R, T, 0, rows, blocks, a, a_stride, out, out_stride);
}

/// A tile of R rows by T activations of Q8_0 x Q8_0.
SN_INLINE void tile_q8_0(int R, int T, const sn_row *rows, int blocks,
                         const uint8_t *a, size_t a_stride, float *out, size_t out_stride) {
    __m256 acc[4][4];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    for (int b = 0; b < blocks; b++) {
        float da[4];
        __m256i qy[4];
        for (int t = 0; t < T; t++) {
            const uint8_t *ab = a + t * a_stride + (size_t)b * 34;
            da[t] = sn_half(ab);
            qy[t] = _mm256_loadu_si256((const __m256i *)(ab + 2));
        }
        for (int r = 0; r < R; r++) {
            const float dw = rows[r].sc[8 * b];
            const __m256i qx = _mm256_loadu_si256((const __m256i *)(rows[r].q + (size_t)b * rows[r].stride));
            const __m256i ax = _mm256_sign_epi8(qx, qx);
            for (int t = 0; t < T; t++) {
                const __m256 d = _mm256_set1_ps(dw * da[t]);
                acc[r][t] = _mm256_fmadd_ps(d, sum_u8_i8(ax, _mm256_sign_epi8(qy[t], qx)), acc[r][t]);
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) out[t * out_stride + r] = sn_hsum8(acc[r][t]);
}

/// How far ahead (bytes) the decode kernels prefetch the packed weights they stream: about 10%
/// faster decode than the hardware prefetcher alone in bench/kernels (a prefetch never faults, so
/// running past the end of a matrix is harmless).
#define SN_PREFETCH 2048

/// Lane k of x, in every lane.
SN_INLINE __m256 lane(__m256 x, int k) {
    return _mm256_permutevar8x32_ps(x, _mm256_set1_epi32(k));
}

// `group_q4_1`: see `SN_GROUP_Q4_1` (sn_internal.h); lane sums by vpmaddubsw + vpmaddwd, the scales
// taken from the product vector by lane permutes.
#define SN_SCALE_PERMUTE(dd, mem, k) lane(dd, k)
SN_GROUP_Q4_1(group_q4_1, SN_INLINE, sum_u8_i8, SN_SCALE_PERMUTE)

/// One activation against a packed group of four Q8_0 rows (see `group_q4_1`); `das` holds the
/// activation's `d` per block.
SN_INLINE void group_q8_0(const uint8_t *g, int blocks, const float *das, const uint8_t *a, float *out) {
    __m256 acc[4];
    for (int j = 0; j < 4; j++) acc[j] = _mm256_setzero_ps();
    for (int b = 0; b < blocks; b++) {
        const uint8_t *gb = g + (size_t)b * 136;
        for (int k = 0; k < 3; k++) _mm_prefetch((const char *)gb + SN_PREFETCH + 64 * k, _MM_HINT_T0);
        const uint8_t *ab = a + (size_t)b * 34;
        const __m128 da = _mm_broadcast_ss(das + b);
        const __m256i qy = _mm256_loadu_si256((const __m256i *)(ab + 2));
        const __m256 dd = _mm256_castps128_ps256(_mm_mul_ps(_mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)gb)), da));
        for (int j = 0; j < 4; j++) {
            const __m256i qx = _mm256_loadu_si256((const __m256i *)(gb + 8 + 32 * j));
            acc[j] = _mm256_fmadd_ps(lane(dd, j), sum_u8_i8(_mm256_sign_epi8(qx, qx), _mm256_sign_epi8(qy, qx)), acc[j]);
        }
    }
    _mm_storeu_ps(out, sn_hsum8x4(acc[0], acc[1], acc[2], acc[3]));
}

/// Eight activations against one Q4_1 row: each weight block is unpacked once for all eight;
/// the activation scales arrive as per-block vectors of the eight tokens' `d` and `s` (`da8`,
/// `sa8`), so the eight `m_w * s_a` sums advance in one vector FMA (lane t is token t's sum, in
/// block order: the same additions as the scalar kernel, the products being exact).
SN_INLINE void row_q4_1_x8_k(sn_row row, int kind, int blocks, const float *da8, const float *sa8,
                             const uint8_t *a, size_t a_stride, float *out, size_t out_stride) {
    __m256 acc[8];
    for (int t = 0; t < 8; t++) acc[t] = _mm256_setzero_ps();
    __m256 summs = _mm256_setzero_ps();
    float d[8] __attribute__((aligned(32)));
    for (int b = 0; b < blocks; b++) {
        const __m256i qx = q4_quants_k(row, b, kind);
        _mm256_store_ps(d, _mm256_mul_ps(_mm256_broadcast_ss(row.sc + 8 * b), _mm256_loadu_ps(da8 + 8 * b)));
        summs = _mm256_fmadd_ps(_mm256_broadcast_ss(row.sc + 8 * b + 1), _mm256_loadu_ps(sa8 + 8 * b), summs);
        const uint8_t *ab = a + (size_t)b * 36 + 4;
        for (int t = 0; t < 8; t++) {
            const __m256i qy = _mm256_loadu_si256((const __m256i *)(ab + t * a_stride));
            acc[t] = _mm256_fmadd_ps(_mm256_broadcast_ss(d + t), sum_u8_i8(qx, qy), acc[t]);
        }
    }
    float s[8];
    _mm256_storeu_ps(s, _mm256_add_ps(sn_hsum8x8(acc), summs));
    for (int t = 0; t < 8; t++) out[t * out_stride] = s[t];
}

SN_INLINE void row_q4_1_x8(sn_row row, int blocks, const float *da8, const float *sa8,
                           const uint8_t *a, size_t a_stride, float *out, size_t out_stride) {
    if (row.shift == 0) row_q4_1_x8_k(row, 0, blocks, da8, sa8, a, a_stride, out, out_stride);
    else if (row.shift == 4) row_q4_1_x8_k(row, 4, blocks, da8, sa8, a, a_stride, out, out_stride);
    else row_q4_1_x8_k(row, -1, blocks, da8, sa8, a, a_stride, out, out_stride);
}

/// Eight activations against one Q8_0 row (see `row_q4_1_x8`).
SN_INLINE void row_q8_0_x8(sn_row row, int blocks, const float *da8,
                           const uint8_t *a, size_t a_stride, float *out, size_t out_stride) {
    __m256 acc[8];
    for (int t = 0; t < 8; t++) acc[t] = _mm256_setzero_ps();
    float d[8] __attribute__((aligned(32)));
    for (int b = 0; b < blocks; b++) {
        const __m256i qx = _mm256_loadu_si256((const __m256i *)(row.q + (size_t)b * row.stride));
        const __m256i ax = _mm256_sign_epi8(qx, qx);
        _mm256_store_ps(d, _mm256_mul_ps(_mm256_broadcast_ss(row.sc + 8 * b), _mm256_loadu_ps(da8 + 8 * b)));
        const uint8_t *ab = a + (size_t)b * 34 + 2;
        for (int t = 0; t < 8; t++) {
            const __m256i qy = _mm256_loadu_si256((const __m256i *)(ab + t * a_stride));
            acc[t] = _mm256_fmadd_ps(_mm256_broadcast_ss(d + t), sum_u8_i8(ax, _mm256_sign_epi8(qy, qx)), acc[t]);
        }
    }
    float s[8];
    _mm256_storeu_ps(s, sn_hsum8x8(acc));
    for (int t = 0; t < 8; t++) out[t * out_stride] = s[t];
}


/// One activation (the decode path): whole groups of four rows with `group_q4_1`/`group_q8_0`.
/// Not inlined, so that its scratch (40 KB of stack) is not added to the prompt path's.
static SN_TARGET __attribute__((noinline)) void decode_rows(const sn_matmul_job *job, int first, int last,
                                                            const uint8_t *a, float *out) {
    const size_t as = 0, os = job->out_stride;
    const int nb = job->blocks;
    const int q4 = job->type == SN_Q4_1;
    const int grouped = job->rows / 4 * 4;
    const int vnni = sn_use_vnni();
    {
        float das[2 * SN_MAX_BLOCKS];
        for (int b = 0; b < nb; b++) {
            if (q4) {
                das[2 * b] = sn_half(a + (size_t)b * 36);
                das[2 * b + 1] = sn_half(a + (size_t)b * 36 + 2);
            } else {
                das[b] = sn_half(a + (size_t)b * 34);
            }
        }
        for (int r = first; r < last;) {
            float *ot = out + r;
            if (r % 4 == 0 && r + 4 <= grouped && r + 4 <= last) {
                const uint8_t *g = job->w + (size_t)r * job->row_bytes;
                if (vnni) (q4 ? sn_group_q4_1_vnni : sn_group_q8_0_vnni)(g, nb, das, a, ot);
                else if (q4) group_q4_1(g, nb, das, a, ot);
                else group_q8_0(g, nb, das, a, ot);
                r += 4;
            } else {
                // A row outside a whole group (or of a group this call has only part of).
                float tab[8 * SN_MAX_BLOCKS];
                sn_row rw[4];
                const int g = r / 4 * 4;
                sn_group_scales(job, g, tab, rw);
                if (q4) tile_q4_1(1, 1, rw + (r - g), nb, a, as, ot, os);
                else tile_q8_0(1, 1, rw + (r - g), nb, a, as, ot, os);
                r += 1;
            }
        }
    }
}

/// Two to seven activations (the short prompt chunks and small decoding batches of the service):
/// the decode path's four-row groups, each group run for every activation while its weights are in
/// L1. Measured on the AVX2-only EPYC (bench-engine, SmolLM2-135M Q4_1): passes of 2, 4 and 7 rows
/// took 7.7-8.1, 11.3-12.9 and 17.8-20.3 ms this way against 10.4-10.5, 19.2-19.9 and 28.8-29.0 ms
/// with two-row tiles. The same bits: every (row, activation) is the decode path's own product.
static SN_TARGET __attribute__((noinline)) void decode_tokens(const sn_matmul_job *job, int first, int last,
                                                              const uint8_t *a, size_t a_stride, int tokens, float *out) {
    const size_t os = job->out_stride;
    const int nb = job->blocks;
    const int q4 = job->type == SN_Q4_1;
    const int grouped = job->rows / 4 * 4;
    const int vnni = sn_use_vnni();
    float das[7][2 * SN_MAX_BLOCKS];
    for (int t = 0; t < tokens; t++) {
        const uint8_t *at = a + (size_t)t * a_stride;
        for (int b = 0; b < nb; b++) {
            if (q4) {
                das[t][2 * b] = sn_half(at + (size_t)b * 36);
                das[t][2 * b + 1] = sn_half(at + (size_t)b * 36 + 2);
            } else {
                das[t][b] = sn_half(at + (size_t)b * 34);
            }
        }
    }
    for (int r = first; r < last;) {
        if (r % 4 == 0 && r + 4 <= grouped && r + 4 <= last) {
            const uint8_t *g = job->w + (size_t)r * job->row_bytes;
            for (int t = 0; t < tokens; t++) {
                const uint8_t *at = a + (size_t)t * a_stride;
                float *ot = out + (size_t)t * os + r;
                if (vnni) (q4 ? sn_group_q4_1_vnni : sn_group_q8_0_vnni)(g, nb, das[t], at, ot);
                else if (q4) group_q4_1(g, nb, das[t], at, ot);
                else group_q8_0(g, nb, das[t], at, ot);
            }
            r += 4;
        } else {
            // A row outside a whole group (or of a group this call has only part of).
            float tab[8 * SN_MAX_BLOCKS];
            sn_row rw[4];
            const int g = r / 4 * 4;
            sn_group_scales(job, g, tab, rw);
            for (int t = 0; t < tokens; t++) {
                const uint8_t *at = a + (size_t)t * a_stride;
                float *ot = out + (size_t)t * os + r;
                if (q4) tile_q4_1(1, 1, rw + (r - g), nb, at, 0, ot, os);
                else tile_q8_0(1, 1, rw + (r - g), nb, at, 0, ot, os);
            }
            r += 1;
        }
    }
}

/// Several activations (the prompt paths): one group of four rows at a time, its scales
/// converted once.
static SN_TARGET __attribute__((noinline)) void prompt_rows(const sn_matmul_job *job, int first, int last,
                                                            const uint8_t *a, size_t a_stride, int tokens) {
    const size_t as = a_stride, os = job->out_stride;
    const int nb = job->blocks;
    const int q4 = job->type == SN_Q4_1;
    const size_t block_bytes = q4 ? 36 : 34;
    float tab[8 * SN_MAX_BLOCKS] __attribute__((aligned(32)));
    sn_row rows[4];
    int t0 = 0;
    if (tokens >= 8) {
        float da8[8 * SN_MAX_BLOCKS] __attribute__((aligned(32)));
        float sa8[8 * SN_MAX_BLOCKS] __attribute__((aligned(32)));
        for (; t0 + 8 <= tokens; t0 += 8) {
            for (int t = 0; t < 8; t++) {
                const uint8_t *at = a + (size_t)(t0 + t) * a_stride;
                for (int b = 0; b < nb; b++) {
                    da8[8 * b + t] = sn_half(at + (size_t)b * block_bytes);
                    sa8[8 * b + t] = q4 ? sn_half(at + (size_t)b * block_bytes + 2) : 0;
                }
            }
            const uint8_t *at = a + (size_t)t0 * a_stride;
            for (int g = first / 4 * 4; g < last; g += 4) {
                sn_group_scales(job, g, tab, rows);
                const int end = last < g + 4 ? last : g + 4;
                for (int r = first > g ? first : g; r < end; r++) {
                    float *ot = job->out + (size_t)t0 * os + r;
                    if (q4) row_q4_1_x8(rows[r - g], nb, da8, sa8, at, as, ot, os);
                    else row_q8_0_x8(rows[r - g], nb, da8, at, as, ot, os);
                }
            }
        }
    }
    if (t0 == tokens) return;
    const uint8_t *at = a + (size_t)t0 * a_stride;
    if (tokens - t0 == 1) decode_rows(job, first, last, at, job->out + (size_t)t0 * os);
    else decode_tokens(job, first, last, at, as, tokens - t0, job->out + (size_t)t0 * os);
}

SN_TARGET void sn_matmul_rows(const sn_matmul_job *job, int first, int last,
                              const uint8_t *a, size_t a_stride, int tokens) {
    if (job->type >= SN_Q2_K && job->type <= SN_Q6_K) {
        if ((job->type == SN_Q4_K || job->type == SN_Q6_K) && tokens >= SN_KQ_GEMM_MIN_TOKENS && sn_use_vnni())
            sn_kquant_gemm_vnni(job, first, last, a, a_stride, tokens);
        else
            sn_kquant_rows(job, first, last, a, a_stride, tokens);
        return;
    }
    if (job->type >= SN_Q4_0 && job->type <= SN_Q5_1) { sn_matmul_rows_q32(job, first, last, a, a_stride, tokens); return; }
    if (tokens == 1) decode_rows(job, first, last, a, job->out);
    else if (sn_use_vnni()) sn_matmul_rows_vnni(job, first, last, a, a_stride, tokens);
    else prompt_rows(job, first, last, a, a_stride, tokens);
}

SN_TARGET void sn_pack_rows(int type, uint8_t *w, size_t row_bytes, int rows, int blocks, uint8_t *scratch) {
    if (type == SN_Q4_0) { sn_pack_q4_0(w, row_bytes, rows, blocks, scratch); return; }
    if (type != SN_Q4_1 && type != SN_Q8_0) return;  // Q5_0, Q5_1 and the K-quants read ggml rows
    const int q4 = type == SN_Q4_1;
    const size_t bb = q4 ? 20 : 34;
    for (int g = 0; g + 4 <= rows; g += 4) {
        uint8_t *group = w + (size_t)g * row_bytes;
        memcpy(scratch, group, 4 * row_bytes);
        for (int b = 0; b < blocks; b++) {
            uint8_t *dst = group + (size_t)b * 4 * bb;
            for (int j = 0; j < 4; j++) {
                const uint8_t *src = scratch + (size_t)j * row_bytes + (size_t)b * bb;
                if (q4) {
                    memcpy(dst + 4 * j, src, 4);
                } else {
                    memcpy(dst + 2 * j, src, 2);
                    memcpy(dst + 8 + 32 * j, src + 2, 32);
                }
            }
            if (q4)
                for (int pair = 0; pair < 2; pair++) {
                    const uint8_t *lo = scratch + (size_t)(2 * pair) * row_bytes + (size_t)b * bb + 4;
                    const uint8_t *hi = lo + row_bytes;
                    for (int i = 0; i < 32; i++) {
                        // Element i: low nibble of byte i (i < 16), else high nibble of byte i - 16.
                        const int ql = i < 16 ? lo[i] & 15 : lo[i - 16] >> 4;
                        const int qh = i < 16 ? hi[i] & 15 : hi[i - 16] >> 4;
                        dst[16 + 32 * pair + i] = (uint8_t)(ql | qh << 4);
                    }
                }
        }
    }
}

SN_TARGET void sn_unpack_row(int type, const uint8_t *w, size_t row_bytes, int rows, int blocks, int r, uint8_t *out) {
    if (type == SN_Q4_0) { sn_unpack_q4_0(w, row_bytes, rows, blocks, r, out); return; }
    if (type != SN_Q4_1 && type != SN_Q8_0) { memcpy(out, w + (size_t)r * row_bytes, row_bytes); return; }
    const sn_matmul_job job = {type, w, row_bytes, rows, blocks, NULL, 0};
    const sn_row row = sn_row_at(&job, r);
    const int q4 = type == SN_Q4_1;
    for (int b = 0; b < blocks; b++) {
        uint8_t *dst = out + (size_t)b * (q4 ? 20 : 34);
        const uint8_t *d = row.d + (size_t)b * row.stride, *q = row.q + (size_t)b * row.stride;
        if (!q4) {
            memcpy(dst, d, 2);
            memcpy(dst + 2, q, 32);
        } else if (row.shift < 0) {
            memcpy(dst, d, 20);
        } else {
            memcpy(dst, d, 4);
            for (int i = 0; i < 16; i++)
                dst[4 + i] = (uint8_t)(((q[i] >> row.shift) & 15) | ((q[i + 16] >> row.shift) & 15) << 4);
        }
    }
}

/// max |x| over 32 floats, the rounded quantized values, and their sum, as Kernels' quantizers:
/// q = nearest(x * id) clamped to -128...127, NaN -> 0.
SN_INLINE int quantize32(const float *x, uint8_t *q, float *d_out) {
    const __m256 sign = _mm256_set1_ps(-0.f);
    __m256 v[4];
    __m256 m = _mm256_setzero_ps();
    for (int i = 0; i < 4; i++) {
        v[i] = _mm256_loadu_ps(x + 8 * i);
        m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[i]));
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, m);
    float amax = 0;
    for (int i = 0; i < 8; i++) amax = amax > lanes[i] ? amax : lanes[i];
    const float d = amax / 127;
    const float id = amax != 0 ? 127 / amax : 0;
    const __m256 mul = _mm256_set1_ps(id);
    __m256i sum = _mm256_setzero_si256();
    __m256i ints[4];
    for (int i = 0; i < 4; i++) {
        __m256 y = _mm256_round_ps(_mm256_mul_ps(v[i], mul), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        y = _mm256_and_ps(y, _mm256_cmp_ps(y, y, _CMP_ORD_Q)); // NaN -> 0
        y = _mm256_min_ps(_mm256_max_ps(y, _mm256_set1_ps(-128)), _mm256_set1_ps(127));
        ints[i] = _mm256_cvtps_epi32(y);
        sum = _mm256_add_epi32(sum, ints[i]);
    }
    // The 32 values (all within -128..127, so the saturating packs change none) to bytes in order:
    // the packs interleave 128-bit lanes, and the permute puts each four-value group back in place.
    const __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(ints[0], ints[1]), _mm256_packs_epi32(ints[2], ints[3]));
    _mm256_storeu_si256((__m256i *)q, _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    __m128i t = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, _MM_SHUFFLE(1, 0, 3, 2)));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, _MM_SHUFFLE(2, 3, 0, 1)));
    *d_out = d;
    return _mm_cvtsi128_si32(t);
}

SN_TARGET void sn_quantize_q8_1(const float *x, int blocks, uint8_t *out) {
    for (int b = 0; b < blocks; b++) {
        uint8_t *block = out + (size_t)b * 36;
        float d;
        const int sum = quantize32(x + 32 * (size_t)b, block + 4, &d);
        const uint16_t hd = f32_to_f16(d), hs = f32_to_f16(d * (float)sum);
        memcpy(block, &hd, 2);
        memcpy(block + 2, &hs, 2);
    }
}

SN_TARGET void sn_quantize_q8_0(const float *x, int blocks, uint8_t *out) {
    for (int b = 0; b < blocks; b++) {
        uint8_t *block = out + (size_t)b * 34;
        float d;
        (void)quantize32(x + 32 * (size_t)b, block + 2, &d);
        const uint16_t hd = f32_to_f16(d);
        memcpy(block, &hd, 2);
    }
}

// MARK: - Attention

size_t sn_attention_scratch(int positions, int head_dim) {
    return (size_t)(positions + 63) / 64 * 64 + (size_t)head_dim + 64 * (size_t)head_dim + 64;
}

/// Loads 8 F16 values as floats.
SN_INLINE __m256 load_f16x8(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

/// `sn_attention_head`'s body, inlined once per SIMD width so that the loops over the width's lanes
/// unroll (with `width` known only at run time they stayed loops: 1.1-1.7x slower, bench/kernels/attention.sh).
SN_INLINE void attention_head(const float *query, const uint16_t *keys, const uint16_t *values,
                              size_t stride, int positions, int first, int head_dim, float scale, float softcap,
                              int tiny, int width, float *scratch, float *out) {
    const int cache_length = (positions + 31) / 32 * 32;
    const int w = width;
    float *scores = scratch;
    float *q = scratch + (size_t)(positions + 63) / 64 * 64;
    float *acc = q + head_dim;  // [slots][head_dim]
    const int vec = head_dim / 8 * 8;
    for (int i = 0; i < vec; i += 8) _mm256_storeu_ps(q + i, f16_round8(_mm256_loadu_ps(query + i)));
    for (int i = vec; i < head_dim; i++) q[i] = f16_round1(query[i]);

    // kq[p] * scale. Products of two F16 values are exact in F32: multiply-add equals FMA.
    const int tiny_kq = tiny && head_dim % w == 0;
    // ggml_vec_dot_f16 of 16 lanes with no tail, no softcap: eight positions' final reductions at
    // once (`sn_hsum8x8` is `reduce16`'s hsum of c1 + c0 for each, bit for bit).
    const int eight_at_once = !tiny_kq && w == 16 && head_dim % 64 == 0 && !(softcap > 0);
    int p0 = 0;
    if (eight_at_once) {
        for (; p0 < first && p0 < positions; p0++) scores[p0] = -INFINITY;  // outside the sliding window
        for (; p0 + 8 <= positions; p0 += 8) {
            __m256 c[8];
            for (int e = 0; e < 8; e++) {
                const uint16_t *k = keys + (size_t)(p0 + e) * stride;
                __m256 s[4][2];
                for (int j = 0; j < 4; j++) s[j][0] = s[j][1] = _mm256_setzero_ps();
                for (int i = 0; i < head_dim; i += 64)
                    for (int j = 0; j < 4; j++)
                        for (int h = 0; h < 2; h++) {
                            const int o = i + j * 16 + 8 * h;
                            s[j][h] = _mm256_fmadd_ps(load_f16x8(k + o), _mm256_loadu_ps(q + o), s[j][h]);
                        }
                const __m256 c0 = _mm256_add_ps(_mm256_add_ps(s[0][0], s[2][0]), _mm256_add_ps(s[1][0], s[3][0]));
                const __m256 c1 = _mm256_add_ps(_mm256_add_ps(s[0][1], s[2][1]), _mm256_add_ps(s[1][1], s[3][1]));
                c[e] = _mm256_add_ps(c1, c0);
            }
            _mm256_storeu_ps(scores + p0, _mm256_mul_ps(sn_hsum8x8(c), _mm256_set1_ps(scale)));
        }
    }
    for (int p = p0; p < positions; p++) {
        if (p < first) { scores[p] = -INFINITY; continue; }  // outside the sliding window
        const uint16_t *k = keys + (size_t)p * stride;
        float dot;
        if (tiny_kq) {
            __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
            if (w == 8) {
                for (int i = 0; i < head_dim; i += 8)
                    lo = _mm256_fmadd_ps(load_f16x8(k + i), _mm256_loadu_ps(q + i), lo);
                dot = sn_hsum8(lo);
            } else {
                for (int i = 0; i < head_dim; i += 16) {
                    lo = _mm256_fmadd_ps(load_f16x8(k + i), _mm256_loadu_ps(q + i), lo);
                    hi = _mm256_fmadd_ps(load_f16x8(k + i + 8), _mm256_loadu_ps(q + i + 8), hi);
                }
                dot = reduce16(lo, hi);
            }
        } else {
            // ggml_vec_dot_f16: four accumulators of w lanes (w/8 registers each) over steps of 4w.
            __m256 s[4][2];
            for (int j = 0; j < 4; j++) s[j][0] = s[j][1] = _mm256_setzero_ps();
            const int full = head_dim / (4 * w) * (4 * w);
            for (int i = 0; i < full; i += 4 * w)
                for (int j = 0; j < 4; j++)
                    for (int h = 0; h < w / 8; h++) {
                        const int o = i + j * w + 8 * h;
                        s[j][h] = _mm256_fmadd_ps(load_f16x8(k + o), _mm256_loadu_ps(q + o), s[j][h]);
                    }
            __m256 c0 = _mm256_add_ps(_mm256_add_ps(s[0][0], s[2][0]), _mm256_add_ps(s[1][0], s[3][0]));
            float reduced;
            if (w == 8) {
                float c[8];
                _mm256_storeu_ps(c, c0);
                reduced = ((c[0] + c[4]) + (c[1] + c[5])) + ((c[2] + c[6]) + (c[3] + c[7]));
            } else {
                __m256 c1 = _mm256_add_ps(_mm256_add_ps(s[0][1], s[2][1]), _mm256_add_ps(s[1][1], s[3][1]));
                reduced = reduce16(c0, c1);
            }
            double total = reduced;
            for (int i = full; i < head_dim; i++) total += (double)(_cvtsh_ss(k[i]) * q[i]);
            dot = (float)total;
        }
        if (softcap > 0) dot = tanhf(dot * (1.0f / softcap)) * softcap;  // ggml_scale, ggml_tanh, ggml_scale
        scores[p] = dot * scale;
    }

    // Softmax over the cache length (masked positions are exactly 0).
    float maximum = -INFINITY;
    for (int p = 0; p < positions; p++) maximum = maximum > scores[p] ? maximum : scores[p];
    const int padded = (positions + w - 1) / w * w;
    for (int p = positions; p < padded; p++) scores[p] = 0;
    {
        const __m256 mv = _mm256_set1_ps(maximum);
        int p = 0;
        for (; p + 8 <= positions; p += 8)
            _mm256_storeu_ps(scores + p, expf_profile(_mm256_sub_ps(_mm256_loadu_ps(scores + p), mv), w));
        if (p < positions) {
            float tmp[8] = {0};
            for (int i = p; i < positions; i++) tmp[i - p] = scores[i] - maximum;
            _mm256_storeu_ps(tmp, expf_profile(_mm256_loadu_ps(tmp), w));
            for (int i = p; i < positions; i++) scores[i] = tmp[i - p];
        }
        for (int i = 0; i < first && i < positions; i++) scores[i] = 0;  // exp(-inf) of the mask
    }
    double sum = 0;
    for (int chunk = 0; chunk < positions; chunk += w) sum += (double)hsum_width(scores + chunk, w);
    const float inverse = (float)(1 / sum);
    {
        const __m256 iv = _mm256_set1_ps(inverse);
        int p = 0;
        for (; p + 8 <= positions; p += 8)
            _mm256_storeu_ps(scores + p, f16_round8(_mm256_mul_ps(_mm256_loadu_ps(scores + p), iv)));
        for (; p < positions; p++) scores[p] = f16_round1(scores[p] * inverse);
    }

    // out[i] = sum_p weight[p] * v[p][i], lane p % slots.
    const int slots = tiny ? w : 4 * w;
    const int full = tiny ? cache_length : cache_length / (4 * w) * (4 * w);
    memset(acc, 0, sizeof(float) * (size_t)slots * head_dim);
    const int used = positions < full ? positions : full;
    // Lane s takes positions s, s + slots, ... in that order. Each lane is accumulated in registers,
    // 64 (or 8) outputs at a time, over its positions, and stored once: the same FMAs in the same
    // order as adding position after position into the lanes in memory, without a load and a store
    // of every lane value for every position.
    for (int s = 0; s < slots && s < used; s++) {
        float *lane = acc + (size_t)s * head_dim;
        int i = 0;
        for (; i + 64 <= vec; i += 64) {
            __m256 l[8];
            for (int j = 0; j < 8; j++) l[j] = _mm256_setzero_ps();
            for (int p = s; p < used; p += slots) {
                const __m256 weight = _mm256_set1_ps(scores[p]);
                const uint16_t *v = values + (size_t)p * stride + i;
                for (int j = 0; j < 8; j++) l[j] = _mm256_fmadd_ps(weight, load_f16x8(v + 8 * j), l[j]);
            }
            for (int j = 0; j < 8; j++) _mm256_storeu_ps(lane + i + 8 * j, l[j]);
        }
        for (; i < vec; i += 8) {
            __m256 l = _mm256_setzero_ps();
            for (int p = s; p < used; p += slots)
                l = _mm256_fmadd_ps(_mm256_set1_ps(scores[p]), load_f16x8(values + (size_t)p * stride + i), l);
            _mm256_storeu_ps(lane + i, l);
        }
        for (; i < head_dim; i++)
            for (int p = s; p < used; p += slots) lane[i] += scores[p] * _cvtsh_ss(values[(size_t)p * stride + i]);
    }
    int i0 = 0;
    if (tiny) {
        // Eight outputs at a time: hsum_width of each output's `w` lanes, the same additions in
        // the same order as hsum8 / reduce16 below, output i in vector lane i % 8.
        for (; i0 + 8 <= head_dim; i0 += 8) {
            __m256 l[16];
            for (int s = 0; s < w; s++) l[s] = _mm256_loadu_ps(acc + (size_t)s * head_dim + i0);
            __m256 u0, u1;
            if (w == 8) {
                // hsum8: r_k = x_{k+4} + x_k, (r0 + r2) + (r1 + r3).
                u0 = _mm256_add_ps(_mm256_add_ps(l[4], l[0]), _mm256_add_ps(l[6], l[2]));
                u1 = _mm256_add_ps(_mm256_add_ps(l[5], l[1]), _mm256_add_ps(l[7], l[3]));
            } else {
                // reduce16: a_k = x_{k+8} + x_k, t_k = a_{k+4} + a_k, (t0 + t2) + (t1 + t3).
                __m256 a[8], t[4];
                for (int k = 0; k < 8; k++) a[k] = _mm256_add_ps(l[k + 8], l[k]);
                for (int k = 0; k < 4; k++) t[k] = _mm256_add_ps(a[k + 4], a[k]);
                u0 = _mm256_add_ps(t[0], t[2]);
                u1 = _mm256_add_ps(t[1], t[3]);
            }
            _mm256_storeu_ps(out + i0, _mm256_add_ps(u0, u1));
        }
    } else {
        // Eight outputs at a time: the same additions as below, output i in vector lane i % 8.
        for (; i0 + 8 <= head_dim; i0 += 8) {
            __m256 l[64];
            for (int s = 0; s < slots; s++) l[s] = _mm256_loadu_ps(acc + (size_t)s * head_dim + i0);
            for (int j = 0; j < w; j++)
                l[j] = _mm256_add_ps(_mm256_add_ps(l[j], l[2 * w + j]), _mm256_add_ps(l[w + j], l[3 * w + j]));
            __m256 reduced;
            if (w == 8) {
                reduced = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(l[0], l[4]), _mm256_add_ps(l[1], l[5])),
                                        _mm256_add_ps(_mm256_add_ps(l[2], l[6]), _mm256_add_ps(l[3], l[7])));
            } else {
                // reduce16: a_k = x_{k+8} + x_k, t_k = a_{k+4} + a_k, (t0 + t2) + (t1 + t3).
                __m256 a[8], t[4];
                for (int k = 0; k < 8; k++) a[k] = _mm256_add_ps(l[k + 8], l[k]);
                for (int k = 0; k < 4; k++) t[k] = _mm256_add_ps(a[k + 4], a[k]);
                reduced = _mm256_add_ps(_mm256_add_ps(t[0], t[2]), _mm256_add_ps(t[1], t[3]));
            }
            __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(reduced));
            __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(reduced, 1));
            for (int p = full; p < positions; p++) {
                const __m256 product = _mm256_mul_ps(_mm256_set1_ps(scores[p]), load_f16x8(values + (size_t)p * stride + i0));
                lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(product)));
                hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(product, 1)));
            }
            _mm256_storeu_ps(out + i0, _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo)));
        }
    }
    for (int i = i0; i < head_dim; i++) {
        // The lane values of output i, slot by slot.
        float l[64];
        for (int s = 0; s < slots; s++) l[s] = acc[(size_t)s * head_dim + i];
        if (tiny) {
            out[i] = hsum_width(l, w);
        } else {
            for (int j = 0; j < w; j++) l[j] = (l[j] + l[2 * w + j]) + (l[w + j] + l[3 * w + j]);
            float reduced = w == 8 ? ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]))
                                   : reduce16(_mm256_loadu_ps(l), _mm256_loadu_ps(l + 8));
            double total = reduced;
            for (int p = full; p < positions; p++)
                total += (double)(scores[p] * _cvtsh_ss(values[(size_t)p * stride + i]));
            out[i] = (float)total;
        }
    }
}

SN_TARGET void sn_attention_head(const float *query, const uint16_t *keys, const uint16_t *values,
                                 size_t stride, int positions, int first, int head_dim, float scale, float softcap,
                                 int tiny, int width, float *scratch, float *out) {
    if (width == 16)
        attention_head(query, keys, values, stride, positions, first, head_dim, scale, softcap, tiny, 16, scratch, out);
    else if (width == 8)
        attention_head(query, keys, values, stride, positions, first, head_dim, scale, softcap, tiny, 8, scratch, out);
    else
        attention_head(query, keys, values, stride, positions, first, head_dim, scale, softcap, tiny, width, scratch, out);
}

// MARK: - Vector operations

SN_TARGET void sn_swiglu(float *gate, const float *up, int count, int width) {
    const int vectorized = count / width * width;
    const __m256 one = _mm256_set1_ps(1), zero = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= vectorized; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i);
        const __m256 silu = _mm256_div_ps(g, _mm256_add_ps(one, expf_profile(_mm256_sub_ps(zero, g), width)));
        _mm256_storeu_ps(gate + i, _mm256_mul_ps(silu, _mm256_loadu_ps(up + i)));
    }
    for (; i < count; i++) {
        const float g = gate[i];
        gate[i] = (g / (1 + expf(-g))) * up[i];
    }
}

SN_TARGET void sn_f32_to_f16(const float *x, uint16_t *out, int count) {
    int i = 0;
    for (; i + 8 <= count; i += 8)
        _mm_storeu_si128((__m128i *)(out + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < count; i++) out[i] = f32_to_f16(x[i]);
}

SN_TARGET void sn_f16_to_f32(const uint16_t *x, float *out, int count) {
    int i = 0;
    for (; i + 8 <= count; i += 8) _mm256_storeu_ps(out + i, load_f16x8(x + i));
    for (; i < count; i++) out[i] = _cvtsh_ss(x[i]);
}

SN_TARGET void sn_softmax_masked(float *row, int count, int first, int end, float scale, float softcap) {
    if (softcap > 0)
        for (int i = first; i < end; i++) row[i] = tanhf(row[i] * (1.0f / softcap)) * softcap;
    __m256 mv = _mm256_set1_ps(-INFINITY);
    int i = first;
    for (; i + 8 <= end; i += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(row + i));
    float lanes[8], maximum = -INFINITY;
    _mm256_storeu_ps(lanes, mv);
    for (int l = 0; l < 8; l++) maximum = lanes[l] > maximum ? lanes[l] : maximum;
    for (; i < end; i++) maximum = row[i] > maximum ? row[i] : maximum;
    // exp((x - max) * scale): scale > 0, so the scaled row has its maximum at the same place.
    const __m256 m = _mm256_set1_ps(maximum), sv = _mm256_set1_ps(scale);
    __m256 acc = _mm256_setzero_ps();
    for (i = first; i + 8 <= end; i += 8) {
        const __m256 e = expf_avx2(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(row + i), m), sv));
        _mm256_storeu_ps(row + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    float sum = sn_hsum8(acc);
    for (; i < end; i++) {
        row[i] = expf((row[i] - maximum) * scale);
        sum += row[i];
    }
    const float inverse = 1.0f / sum;
    const __m256 iv = _mm256_set1_ps(inverse);
    for (i = first; i + 8 <= end; i += 8) _mm256_storeu_ps(row + i, _mm256_mul_ps(_mm256_loadu_ps(row + i), iv));
    for (; i < end; i++) row[i] *= inverse;
    for (i = 0; i < first && i < count; i++) row[i] = 0;
    for (i = end; i < count; i++) row[i] = 0;
}

#else  // not x86-64: the Swift reference paths are used.

int sn_kernels_available(void) { return 0; }
int sn_cpu_has_avx512(void) { return 0; }
void sn_pack_rows(int type, uint8_t *w, size_t row_bytes, int rows, int blocks, uint8_t *scratch) {
    (void)type; (void)w; (void)row_bytes; (void)rows; (void)blocks; (void)scratch;
}
void sn_unpack_row(int type, const uint8_t *w, size_t row_bytes, int rows, int blocks, int r, uint8_t *out) {
    (void)type; (void)w; (void)row_bytes; (void)rows; (void)blocks; (void)r; (void)out;
}
void sn_matmul_rows(const sn_matmul_job *job, int first, int last, const uint8_t *a, size_t a_stride, int tokens) {
    (void)job; (void)first; (void)last; (void)a; (void)a_stride; (void)tokens;
}
void sn_quantize_q8_1(const float *x, int blocks, uint8_t *out) { (void)x; (void)blocks; (void)out; }
void sn_quantize_q8_0(const float *x, int blocks, uint8_t *out) { (void)x; (void)blocks; (void)out; }
size_t sn_attention_scratch(int positions, int head_dim) {
    return (size_t)(positions + 63) / 64 * 64 + (size_t)head_dim + 64 * (size_t)head_dim + 64;
}
void sn_attention_head(const float *query, const uint16_t *keys, const uint16_t *values, size_t stride, int positions,
                       int first, int head_dim, float scale, float softcap, int tiny, int width, float *scratch, float *out) {
    (void)query; (void)keys; (void)values; (void)stride; (void)positions; (void)head_dim; (void)scale;
    (void)first; (void)softcap;
    (void)tiny; (void)width; (void)scratch; (void)out;
}
void sn_swiglu(float *gate, const float *up, int count, int width) { (void)gate; (void)up; (void)count; (void)width; }
void sn_f32_to_f16(const float *x, uint16_t *out, int count) { (void)x; (void)out; (void)count; }
void sn_f16_to_f32(const uint16_t *x, float *out, int count) { (void)x; (void)out; (void)count; }
void sn_softmax_masked(float *row, int count, int first, int end, float scale, float softcap) {
    (void)row; (void)count; (void)first; (void)end; (void)scale; (void)softcap;
}

#endif
