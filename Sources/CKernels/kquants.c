// The K-quant matrix products (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K weights with Q8_K activations) and
// the Q8_K activation quantizer; see include/sn_kernels.h and Kernels' KQuant.swift.
//
// Each (row, activation) pair is computed exactly as ggml's AVX2 `ggml_vec_dot_q*_K_q8_K` and the
// Swift references: per 256-element block, eight exact 32-bit integer lanes (lane k: elements with
// (i % 32) / 4 == k), `acc = fma(d_w * d_a, lane, acc)`, and the type's minimum term. A weight block
// is unpacked once (`kq_block`) and then used by every activation of the call (the prompt path:
// up to eight at a time); the matrices stay in ggml's row layout (no packing).
#include "sn_kernels.h"

#include <math.h>
#include <string.h>

// The float operations below are written in ggml's order; the compiler must not fuse a multiply
// and an add that ggml keeps apart (the fused ones are explicit intrinsics).
#pragma STDC FP_CONTRACT OFF

#if defined(__x86_64__)
#include <immintrin.h>

#include "sn_internal.h"

#define KQ_TARGET __attribute__((target("avx2,fma,f16c")))
#define KQ_INLINE static inline __attribute__((always_inline)) KQ_TARGET

/// Bytes per weight block of a K-quant type (0: not a K-quant type).
static size_t kq_block_bytes(int type) {
    switch (type) {
    case SN_Q2_K: return 84;
    case SN_Q3_K: return 110;
    case SN_Q4_K: return 144;
    case SN_Q5_K: return 176;
    case SN_Q6_K: return 210;
    default: return 0;
    }
}

#define KQ_A_BYTES 292

/// One weight block, unpacked for every activation that meets it.
typedef struct {
    /// The 32 quants of group g (elements 32g ..< 32g + 32) as unsigned bytes (Q3_K: the two low
    /// bits; Q6_K: 0...63 before the - 32).
    __m256i q[8];
    /// Q3_K: the high-bit term of group g (0 when the bit is set, else 4), subtracted.
    __m256i h[8];
    /// The 16-bit scales of group g's elements, as `_mm256_madd_epi16` pairs them: elements 0..15
    /// in the low 128 bits, 16..31 in the high.
    __m256i sc[8];
    /// Q2_K: the sixteen minimums; Q4_K/Q5_K: the eight minimums (in both 128-bit halves); Q6_K: the sixteen
    /// scales, for the 16-element activation sums.
    __m256i m;
    float d, dmin;
} kq_block;

/// Byte shuffle that broadcasts 16-bit element `e` of each 128-bit half.
KQ_INLINE __m256i kq_bcast16(int e0, int e1) {
    return _mm256_setr_m128i(_mm_set1_epi16((short)(2 * e0 | (2 * e0 + 1) << 8)),
                             _mm_set1_epi16((short)(2 * e1 | (2 * e1 + 1) << 8)));
}

/// Sixteen 16-bit scales (one per 16 elements) as the eight groups' madd factors: group g gets
/// scale 2g in its low half and 2g + 1 in its high half.
KQ_INLINE void kq_scales16(__m256i all, __m256i *sc) {
    const __m256i lo = _mm256_permute2x128_si256(all, all, 0x00);
    const __m256i hi = _mm256_permute2x128_si256(all, all, 0x11);
    for (int g = 0; g < 8; g++) sc[g] = _mm256_shuffle_epi8(g < 4 ? lo : hi, kq_bcast16(2 * (g % 4), 2 * (g % 4) + 1));
}

/// Q4_K/Q5_K: the eight six-bit scales (low 128 bits) and minimums (high) as 16-bit values,
/// unpacked from the twelve bytes at `q` as ggml's AVX2 kernels do.
KQ_INLINE __m256i kq_scales_mins(const uint8_t *q) {
    uint32_t u[4];
    memcpy(u, q, 12);
    const uint32_t kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
    u[3] = ((u[2] >> 4) & kmask2) | (((u[1] >> 6) & kmask3) << 4);
    const uint32_t uaux = u[1] & kmask1;
    u[1] = (u[2] & kmask2) | (((u[0] >> 6) & kmask3) << 4);
    u[2] = uaux;
    u[0] &= kmask1;
    return _mm256_cvtepu8_epi16(_mm_set_epi32((int)u[3], (int)u[2], (int)u[1], (int)u[0]));
}

KQ_INLINE void kq_unpack(int type, const uint8_t *x, kq_block *w) {
    const __m256i m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(0xF);
    switch (type) {
    case SN_Q2_K: {
        w->d = sn_half(x + 80);
        w->dmin = sn_half(x + 82);
        const __m128i sm = _mm_loadu_si128((const __m128i *)x);
        w->m = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sm, 4), _mm_set1_epi8(0xF)));
        for (int n = 0; n < 2; n++) {
            const __m256i bits = _mm256_loadu_si256((const __m256i *)(x + 16 + 32 * n));
            for (int j = 0; j < 4; j++) {
                const int g = 4 * n + j;
                w->q[g] = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * j), m3);
            }
        }
        kq_scales16(_mm256_cvtepu8_epi16(_mm_and_si128(sm, _mm_set1_epi8(0xF))), w->sc);
        break;
    }
    case SN_Q3_K: {
        w->d = sn_half(x + 108);
        w->dmin = 0;
        uint32_t aux[3];
        memcpy(aux, x + 96, 12);
        const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
        const __m128i scales128 = _mm_sub_epi8(_mm_set_epi32(
            (int)(((aux[1] >> 4) & kmask2) | (((aux[2] >> 6) & kmask1) << 4)),
            (int)(((aux[0] >> 4) & kmask2) | (((aux[2] >> 4) & kmask1) << 4)),
            (int)((aux[1] & kmask2) | (((aux[2] >> 2) & kmask1) << 4)),
            (int)((aux[0] & kmask2) | (((aux[2] >> 0) & kmask1) << 4))), _mm_set1_epi8(32));
        kq_scales16(_mm256_cvtepi8_epi16(scales128), w->sc);
        const __m256i hbits = _mm256_loadu_si256((const __m256i *)x);
        const __m256i one = _mm256_set1_epi8(1);
        for (int n = 0; n < 2; n++) {
            const __m256i bits = _mm256_loadu_si256((const __m256i *)(x + 32 + 32 * n));
            for (int j = 0; j < 4; j++) {
                const int g = 4 * n + j, bit = 4 * n + j;
                w->q[g] = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * j), m3);
                // 4 where the bit is clear: ((~h) >> bit & 1) << 2, per byte.
                w->h[g] = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(_mm256_andnot_si256(hbits, _mm256_set1_epi8((char)0xFF)), bit), one), 2);
            }
        }
        break;
    }
    case SN_Q4_K:
    case SN_Q5_K: {
        w->d = sn_half(x);
        w->dmin = sn_half(x + 2);
        const __m256i sm = kq_scales_mins(x + 4);
        w->m = _mm256_permute2x128_si256(sm, sm, 0x11);
        const __m256i scales = _mm256_permute2x128_si256(sm, sm, 0x00);
        const uint8_t *qs = x + (type == SN_Q4_K ? 16 : 48);
        const __m256i hbits = type == SN_Q5_K ? _mm256_loadu_si256((const __m256i *)(x + 16)) : _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            const __m256i bits = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
            w->q[2 * c] = _mm256_and_si256(bits, m4);
            w->q[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
            if (type == SN_Q5_K)
                for (int k = 0; k < 2; k++) {
                    const int g = 2 * c + k;
                    const __m256i hb = _mm256_and_si256(_mm256_srli_epi16(hbits, g), _mm256_set1_epi8(1));
                    w->q[g] = _mm256_add_epi8(w->q[g], _mm256_slli_epi16(hb, 4));
                }
            w->sc[2 * c] = _mm256_shuffle_epi8(scales, kq_bcast16(2 * c, 2 * c));
            w->sc[2 * c + 1] = _mm256_shuffle_epi8(scales, kq_bcast16(2 * c + 1, 2 * c + 1));
        }
        break;
    }
    case SN_Q6_K: {
        w->d = sn_half(x + 208);
        w->dmin = 0;
        w->m = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(x + 192)));
        kq_scales16(w->m, w->sc);
        for (int n = 0; n < 2; n++) {
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(x + 64 * n));
            const __m256i l2 = _mm256_loadu_si256((const __m256i *)(x + 64 * n + 32));
            const __m256i hb = _mm256_loadu_si256((const __m256i *)(x + 128 + 32 * n));
            const __m256i lows[4] = {_mm256_and_si256(l1, m4), _mm256_and_si256(l2, m4),
                                     _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                     _mm256_and_si256(_mm256_srli_epi16(l2, 4), m4)};
            for (int k = 0; k < 4; k++) {
                const int g = 4 * n + k;
                const __m256i high = _mm256_and_si256(_mm256_srli_epi16(hb, 2 * k), m3);
                w->q[g] = _mm256_or_si256(lows[k], _mm256_slli_epi16(high, 4));
            }
        }
        break;
    }
    default: break;
    }
}

/// The eight integer lanes of one block against one Q8_K block `a`.
KQ_INLINE __m256i kq_lanes(int type, const kq_block *w, const uint8_t *a) {
    __m256i sumi = _mm256_setzero_si256();
    for (int g = 0; g < 8; g++) {
        const __m256i y = _mm256_loadu_si256((const __m256i *)(a + 4 + 32 * g));
        __m256i p = _mm256_maddubs_epi16(w->q[g], y);
        if (type == SN_Q3_K) p = _mm256_sub_epi16(p, _mm256_maddubs_epi16(w->h[g], y));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(w->sc[g], p));
    }
    if (type == SN_Q6_K) {
        const __m256i bsums = _mm256_loadu_si256((const __m256i *)(a + 260));
        sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32(_mm256_madd_epi16(bsums, w->m), 5));
    }
    return sumi;
}

/// The running sums of one (row, activation) pair.
typedef struct {
    __m256 acc;
    __m128 acc_m;  // Q4_K
    float summs;   // Q5_K
} kq_acc;

KQ_INLINE void kq_zero(kq_acc *s) {
    s->acc = _mm256_setzero_ps();
    s->acc_m = _mm_setzero_ps();
    s->summs = 0;
}

/// Adds one block of one activation to `s`, in ggml's order for `type`.
KQ_INLINE void kq_step(int type, const kq_block *w, const uint8_t *a, kq_acc *s) {
    float da;
    memcpy(&da, a, 4);
    const float d = da * w->d;
    const float dmin = -da * w->dmin;
    if (type == SN_Q2_K) {
        const __m256i bsums = _mm256_loadu_si256((const __m256i *)(a + 260));
        const __m256i prod = _mm256_madd_epi16(w->m, bsums);
        s->acc = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(prod), s->acc);
    } else if (type == SN_Q4_K || type == SN_Q5_K) {
        const __m256i bsums = _mm256_loadu_si256((const __m256i *)(a + 260));
        const __m128i q8s = _mm_hadd_epi16(_mm256_castsi256_si128(bsums), _mm256_extracti128_si256(bsums, 1));
        const __m128i prod = _mm_madd_epi16(_mm256_castsi256_si128(w->m), q8s);
        if (type == SN_Q4_K) {
            s->acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), s->acc_m);
        } else {
            const __m128i h = _mm_hadd_epi32(_mm_hadd_epi32(prod, _mm_setzero_si128()), _mm_setzero_si128());
            // ggml's `summs += dmin * x`, which GCC compiles to one FMA.
            s->summs = _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(dmin), _mm_set_ss((float)_mm_cvtsi128_si32(h)), _mm_set_ss(s->summs)));
        }
    }
    s->acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(kq_lanes(type, w, a)), s->acc);
}

KQ_INLINE float kq_result(int type, const kq_acc *s) {
    float r = sn_hsum8(s->acc);
    if (type == SN_Q4_K) {
        __m128 m = _mm_add_ps(s->acc_m, _mm_movehl_ps(s->acc_m, s->acc_m));
        m = _mm_add_ss(m, _mm_movehdup_ps(m));
        r = r + _mm_cvtss_f32(m);
    } else if (type == SN_Q5_K) {
        r = r + s->summs;
    }
    return r;
}

/// Rows [first, last) of `job` against activations t0 .. t0 + T (T <= 8), each weight block
/// unpacked once for all T.
KQ_INLINE void kq_tile(int type, const sn_matmul_job *job, int first, int last,
                       const uint8_t *a, size_t a_stride, int T, float *out) {
    const size_t bb = kq_block_bytes(type);
    const int nb = job->blocks / 8;
    for (int r = first; r < last; r++) {
        const uint8_t *row = job->w + (size_t)r * job->row_bytes;
        kq_acc s[8];
        for (int t = 0; t < T; t++) kq_zero(&s[t]);
        for (int b = 0; b < nb; b++) {
            kq_block w;
            kq_unpack(type, row + (size_t)b * bb, &w);
            for (int t = 0; t < T; t++) kq_step(type, &w, a + t * a_stride + (size_t)b * KQ_A_BYTES, &s[t]);
        }
        for (int t = 0; t < T; t++) out[t * job->out_stride + r] = kq_result(type, &s[t]);
    }
}

#define KQ_TYPE_RUN(TYPE)                                                                         \
    static KQ_TARGET __attribute__((noinline)) void kq_run_##TYPE(const sn_matmul_job *job, int first, int last, \
                                                                 const uint8_t *a, size_t a_stride, int tokens) { \
        int t0 = 0;                                                                               \
        for (; t0 + 8 <= tokens; t0 += 8)                                                         \
            kq_tile(TYPE, job, first, last, a + t0 * a_stride, a_stride, 8, job->out + t0 * job->out_stride); \
        for (; t0 + 4 <= tokens; t0 += 4)                                                         \
            kq_tile(TYPE, job, first, last, a + t0 * a_stride, a_stride, 4, job->out + t0 * job->out_stride); \
        for (; t0 < tokens; t0++)                                                                 \
            kq_tile(TYPE, job, first, last, a + t0 * a_stride, a_stride, 1, job->out + t0 * job->out_stride); \
    }

KQ_TYPE_RUN(SN_Q2_K)
KQ_TYPE_RUN(SN_Q3_K)
KQ_TYPE_RUN(SN_Q4_K)
KQ_TYPE_RUN(SN_Q5_K)
KQ_TYPE_RUN(SN_Q6_K)

KQ_TARGET void sn_kquant_rows(const sn_matmul_job *job, int first, int last,
                              const uint8_t *a, size_t a_stride, int tokens) {
    switch (job->type) {
    case SN_Q2_K: kq_run_SN_Q2_K(job, first, last, a, a_stride, tokens); break;
    case SN_Q3_K: kq_run_SN_Q3_K(job, first, last, a, a_stride, tokens); break;
    case SN_Q4_K: kq_run_SN_Q4_K(job, first, last, a, a_stride, tokens); break;
    case SN_Q5_K: kq_run_SN_Q5_K(job, first, last, a, a_stride, tokens); break;
    case SN_Q6_K: kq_run_SN_Q6_K(job, first, last, a, a_stride, tokens); break;
    default: break;
    }
}

// MARK: - Q4_K and Q6_K prompt GEMM with AVX512-VNNI

// `sn_kquant_gemm_vnni`: the same numbers as `sn_kquant_rows`, with the work register-blocked.
//
// Why the results are the same: for each (row, activation, block) `kq_lanes` forms eight int32
// lanes, lane k = sum over groups g of sc_g(k) * (products of group g's elements 4k..4k+3) (Q6_K:
// minus 32 * the 16-element sums' share); integer sums are exact, so any order of the same
// products gives the same lanes. Here one 512-bit register holds groups 2p (low half) and 2p + 1
// (high half): vpdpbusd forms each lane's four products (u8 weight x s8 activation, |sum| <=
// 4 * 63 * 128 < 2^15), the sums of pairs p and p + 1 become the low and high 16 bits of each lane,
// and one vpdpwssd multiplies both by their 16-bit scales and adds them into the lanes; the two
// halves are added at the end of the block. Q6_K's correction enters as vpdpwssd with the scales
// times -32 (|scale * 32| <= 4096 fits 16 bits).
// The float operations are `kq_step`'s, in its order, on the same values: `acc = fma(d_w * d_a,
// float(lanes), acc)`, Q4_K's minimum term in its own four lanes, and `kq_result` at the end.
//
// Blocking: a chunk of at most KG_TB activations (so their blocks stay in L2) against groups of 4
// rows; each row's block is unpacked once per chunk (into 512-bit pairs) and meets the chunk's
// activations 4 at a time (4 x 4 tiles: 16 integer accumulators in registers; the float ones in
// L1, touched once per block). Q4_K's whole groups of four rows take `kg4_run` (below), the same
// numbers with two rows per register; this tile keeps Q6_K and Q4_K's last rows.
#define KG_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define KG_INLINE static inline __attribute__((always_inline)) KG_TARGET
#define KG_TB 64

/// `_mm512_dpwssd_epi32`, kept as one instruction: the compiler otherwise splits some into a
/// multiply-add and a separate add (the same numbers, one more operation).
KG_INLINE __m512i kg_dpwssd(__m512i acc, __m512i a, __m512i b) {
    __asm__("vpdpwssd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
    return acc;
}

/// One pair of 32-element groups of one (row, activation): the lane sums of four products of each
/// group (`q0` x `y0`, `q1` x `y1`; |sum| <= 4 * 63 * 128 < 2^15) as the two 16-bit halves of each
/// lane, times their scales `s` (low and high 16 bits), added into the lanes `is`.
KG_INLINE __m512i kg_group_pair(__m512i is, __m512i q0, __m512i y0, __m512i q1, __m512i y1, __m512i s) {
    const __m512i d0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q0, y0);
    const __m512i d1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q1, y1);
    return kg_dpwssd(is, _mm512_mask_blend_epi16(0xAAAAAAAA, d0, _mm512_slli_epi32(d1, 16)), s);
}

/// Activation block `at`'s scale (`*da`), sixteen 16-bit sums (`*bsums`), and their pairwise sums:
/// the eight 32-element groups' sums.
KG_INLINE __m128i kg_activation(const uint8_t *at, float *da, __m256i *bsums) {
    memcpy(da, at, 4);
    *bsums = _mm256_loadu_si256((const __m256i *)(at + 260));
    return _mm_hadd_epi16(_mm256_castsi256_si128(*bsums), _mm256_extracti128_si256(*bsums, 1));
}

/// One unpacked block of one row: `q[p]` the quants of groups 2p and 2p + 1; `s2[j]` each lane's
/// scales for pairs 2j (low 16 bits) and 2j + 1 (high); `m` Q4_K's minimums (low 128 bits) or
/// Q6_K's sixteen scales times -32.
typedef struct {
    __m512i q[4], s2[2];
    __m256i m;
    float d, dmin;
} kg_row;

KG_INLINE void kg_unpack(int type, const uint8_t *x, kg_row *w) {
    kq_block b;
    kq_unpack(type, x, &b);
    __m512i sc[4];
    for (int p = 0; p < 4; p++) {
        w->q[p] = _mm512_inserti64x4(_mm512_castsi256_si512(b.q[2 * p]), b.q[2 * p + 1], 1);
        sc[p] = _mm512_inserti64x4(_mm512_castsi256_si512(b.sc[2 * p]), b.sc[2 * p + 1], 1);
    }
    // Both 16-bit halves of a lane of `sc[p]` hold that lane's scale.
    for (int p = 0; p < 2; p++) w->s2[p] = _mm512_mask_blend_epi16(0xAAAAAAAA, sc[2 * p], sc[2 * p + 1]);
    w->m = type == SN_Q6_K ? _mm256_mullo_epi16(b.m, _mm256_set1_epi16(-32)) : b.m;
    w->d = b.d;
    w->dmin = b.dmin;
}

/// Rows 2j and 2j + 1 of a tile side by side, for the block's float steps two rows at a time:
/// `m6`: their Q6_K `m` (low, high 256 bits); `m4`: their Q4_K minimums (low, high 128 bits);
/// `d`, `dmin`: their scales, each repeated over its row's lanes.
typedef struct {
    __m512i m6;
    __m512 d;
    __m256i m4;
    __m256 dmin;
} kg_pair;

KG_INLINE __m512 kg_join(__m256 lo, __m256 hi) {
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(lo)), _mm256_castps_pd(hi), 1));
}

KG_INLINE void kg_pairs(int R, const kg_row *w, kg_pair *wp) {
    for (int r = 0; r + 2 <= R; r += 2) {
        kg_pair *p = &wp[r / 2];
        p->m6 = _mm512_inserti64x4(_mm512_castsi256_si512(w[r].m), w[r + 1].m, 1);
        p->m4 = _mm256_inserti128_si256(w[r].m, _mm256_castsi256_si128(w[r + 1].m), 1);
        p->d = kg_join(_mm256_set1_ps(w[r].d), _mm256_set1_ps(w[r + 1].d));
        p->dmin = _mm256_setr_m128(_mm_set1_ps(w[r].dmin), _mm_set1_ps(w[r + 1].dmin));
    }
}

/// R rows (`w`, paired in `wp`) by T activations (`a`: block b of the tile's first activation),
/// one block: accumulates into `acc[t * 4 + r]` (and Q4_K's `accm`).
KG_INLINE void kg_tile(int type, int R, int T, const kg_row *w, const kg_pair *wp, const uint8_t *a,
                       size_t a_stride, __m256 *acc, __m128 *accm) {
    __m512i is[4][4];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) is[r][t] = _mm512_setzero_si512();
    for (int p = 0; p < 4; p += 2) {
        __m512i y0[4], y1[4];
        for (int t = 0; t < T; t++) {
            y0[t] = _mm512_loadu_si512((const void *)(a + t * a_stride + 4 + 64 * p));
            y1[t] = _mm512_loadu_si512((const void *)(a + t * a_stride + 68 + 64 * p));
        }
        for (int r = 0; r < R; r++) {
            const __m512i q0 = w[r].q[p], q1 = w[r].q[p + 1], s = w[r].s2[p / 2];
            for (int t = 0; t < T; t++) is[r][t] = kg_group_pair(is[r][t], q0, y0[t], q1, y1[t], s);
        }
    }
    for (int t = 0; t < T; t++) {
        float da;
        __m256i bsums;
        const __m128i q8s = kg_activation(a + t * a_stride, &da, &bsums);
        int r = 0;
        // Two rows at a time: the same operations on the same values as the single-row steps below.
        for (; r + 2 <= R; r += 2) {
            const kg_pair *pr = &wp[r / 2];
            __m512i lanes = _mm512_add_epi32(_mm512_shuffle_i64x2(is[r][t], is[r + 1][t], 0x44),
                                             _mm512_shuffle_i64x2(is[r][t], is[r + 1][t], 0xEE));
            if (type == SN_Q6_K) lanes = _mm512_dpwssd_epi32(lanes, _mm512_broadcast_i64x4(bsums), pr->m6);
            if (type == SN_Q4_K) {
                const __m256i prod = _mm256_madd_epi16(pr->m4, _mm256_broadcastsi128_si256(q8s));
                const __m256 dmin = _mm256_mul_ps(_mm256_set1_ps(-da), pr->dmin);
                __m256 *m = (__m256 *)(accm + t * 4 + r);
                _mm256_storeu_ps((float *)m, _mm256_fmadd_ps(dmin, _mm256_cvtepi32_ps(prod), _mm256_loadu_ps((const float *)m)));
            }
            const __m512 d = _mm512_mul_ps(_mm512_set1_ps(da), pr->d);
            float *o = (float *)(acc + t * 4 + r);
            _mm512_storeu_ps(o, _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(lanes), _mm512_loadu_ps(o)));
        }
        for (; r < R; r++) {
            __m256i lanes = _mm256_add_epi32(_mm512_castsi512_si256(is[r][t]), _mm512_extracti64x4_epi64(is[r][t], 1));
            if (type == SN_Q6_K) lanes = _mm256_dpwssd_epi32(lanes, bsums, w[r].m);
            if (type == SN_Q4_K) {
                const float dmin = -da * w[r].dmin;
                const __m128i prod = _mm_madd_epi16(_mm256_castsi256_si128(w[r].m), q8s);
                accm[t * 4 + r] = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), accm[t * 4 + r]);
            }
            const float d = da * w[r].d;
            acc[t * 4 + r] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(lanes), acc[t * 4 + r]);
        }
    }
}

#define KG_T_CASES(TYPE, R)                                                                      \
    switch (T) {                                                                                 \
    case 4: kg_tile(TYPE, R, 4, w, wp, ab, a_stride, acc, accm); break;                              \
    case 3: kg_tile(TYPE, R, 3, w, wp, ab, a_stride, acc, accm); break;                              \
    case 2: kg_tile(TYPE, R, 2, w, wp, ab, a_stride, acc, accm); break;                              \
    default: kg_tile(TYPE, R, 1, w, wp, ab, a_stride, acc, accm); break;                             \
    }

#define KG_TYPE_RUN(TYPE)                                                                        \
    static KG_TARGET __attribute__((noinline)) void kg_run_##TYPE(const sn_matmul_job *job, int first, int last, \
                                                                 const uint8_t *a, size_t a_stride, int tokens) { \
        const size_t bb = kq_block_bytes(TYPE);                                                  \
        const int nb = job->blocks / 8;                                                          \
        /* Activations per chunk: their blocks within about 256 KiB, a multiple of 4. */          \
        int tb = (int)((256u << 10) / ((size_t)nb * KQ_A_BYTES)) / 4 * 4;                        \
        tb = tb < 8 ? 8 : tb > KG_TB ? KG_TB : tb;                                               \
        __m256 acc_all[KG_TB * 4];                                                               \
        __m128 accm_all[KG_TB * 4];                                                              \
        for (int c = 0; c < tokens; c += tb) {                                                   \
            const int tc = tokens - c < tb ? tokens - c : tb;                                    \
            const uint8_t *ac = a + (size_t)c * a_stride;                                        \
            for (int g = first; g < last; g += 4) {                                              \
                const int R = last - g < 4 ? last - g : 4;                                       \
                for (int i = 0; i < tc * 4; i++) {                                               \
                    acc_all[i] = _mm256_setzero_ps();                                            \
                    accm_all[i] = _mm_setzero_ps();                                              \
                }                                                                                \
                for (int b = 0; b < nb; b++) {                                                   \
                    kg_row w[4];                                                                 \
                    for (int r = 0; r < R; r++)                                                  \
                        kg_unpack(TYPE, job->w + (size_t)(g + r) * job->row_bytes + (size_t)b * bb, &w[r]); \
                    kg_pair wp[2];                                                               \
                    kg_pairs(R, w, wp);                                                          \
                    for (int t0 = 0; t0 < tc; t0 += 4) {                                         \
                        const int T = tc - t0 < 4 ? tc - t0 : 4;                                 \
                        const uint8_t *ab = ac + (size_t)t0 * a_stride + (size_t)b * KQ_A_BYTES; \
                        __m256 *acc = acc_all + t0 * 4;                                          \
                        __m128 *accm = accm_all + t0 * 4;                                        \
                        switch (R) {                                                             \
                        case 4: KG_T_CASES(TYPE, 4) break;                                       \
                        case 3: KG_T_CASES(TYPE, 3) break;                                       \
                        case 2: KG_T_CASES(TYPE, 2) break;                                       \
                        default: KG_T_CASES(TYPE, 1) break;                                      \
                        }                                                                        \
                    }                                                                            \
                }                                                                                \
                for (int t = 0; t < tc; t++)                                                     \
                    for (int r = 0; r < R; r++) {                                                \
                        const kq_acc s = {acc_all[t * 4 + r], accm_all[t * 4 + r], 0};           \
                        job->out[(size_t)(c + t) * job->out_stride + g + r] = kq_result(TYPE, &s); \
                    }                                                                            \
            }                                                                                    \
        }                                                                                        \
    }

KG_TYPE_RUN(SN_Q4_K)
KG_TYPE_RUN(SN_Q6_K)

// MARK: Q4_K with two rows per register

// `kg4_run`: Q4_K's prompt GEMM laid out so that less work per block falls outside the integer
// products. The numbers are `kg_tile`'s (and so `kq_step`'s): the same integer lanes, then the same
// float operations in the same order on the same values. What differs is where things sit: one
// 512-bit register holds one group of two rows (row 2p in the low 256 bits, row 2p + 1 in the high)
// and each activation group is broadcast to both halves, so a row pair's lanes come out of the
// products already in place (no halves to add), its float step is one conversion and one FMA for
// both rows, and the minimum terms of four rows take one register. Tiles are 4 rows x up to 4
// activations; rows after the last whole group of four take `kg_run_SN_Q4_K`. 1.08-1.18x the
// previous tile on the 1B shapes (bench/kernels/kquant_gemm_commits.sh, bench/results/kquant-gemm-commits-kg4.md).

/// Four rows' block: `q[p][g]` group g of rows 2p (low) and 2p + 1 (high); `s[p][j]` every lane's
/// scales of groups 2j (low 16 bits) and 2j + 1 (high); `d[p]` each row's `d` over its lanes; `m`
/// the rows' eight minimums (128 bits per row); `dmin` each row's `dmin` over its 128 bits.
typedef struct {
    __m512i q[2][8], s[2][4];
    __m512 d[2];
    __m512i m;
    __m512 dmin;
} kg4_rows;

KG_INLINE void kg4_unpack(const uint8_t *const x[4], kg4_rows *w) {
    const __m512i m4 = _mm512_set1_epi8(0xF);
    __m128i sm[4][2];
    float d[4], dmin[4];
    for (int r = 0; r < 4; r++) {
        d[r] = sn_half(x[r]);
        dmin[r] = sn_half(x[r] + 2);
        const __m256i v = kq_scales_mins(x[r] + 4);
        sm[r][0] = _mm256_castsi256_si128(v);      // eight 16-bit scales
        sm[r][1] = _mm256_extracti128_si256(v, 1); // eight 16-bit minimums
    }
    for (int p = 0; p < 2; p++) {
        const uint8_t *x0 = x[2 * p] + 16, *x1 = x[2 * p + 1] + 16;
        for (int c = 0; c < 4; c++) {
            const __m512i bits = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(x0 + 32 * c))),
                                                    _mm256_loadu_si256((const __m256i *)(x1 + 32 * c)), 1);
            w->q[p][2 * c] = _mm512_and_si512(bits, m4);
            w->q[p][2 * c + 1] = _mm512_and_si512(_mm512_srli_epi16(bits, 4), m4);
        }
        // 32-bit element j of a row's scales is (scale 2j, scale 2j + 1): broadcast it over the row's lanes.
        const __m512i both = _mm512_inserti32x4(_mm512_castsi128_si512(sm[2 * p][0]), sm[2 * p + 1][0], 1);
        for (int j = 0; j < 4; j++)
            w->s[p][j] = _mm512_permutexvar_epi32(_mm512_setr_epi32(j, j, j, j, j, j, j, j, 4 + j, 4 + j, 4 + j, 4 + j, 4 + j, 4 + j, 4 + j, 4 + j), both);
        w->d[p] = kg_join(_mm256_set1_ps(d[2 * p]), _mm256_set1_ps(d[2 * p + 1]));
    }
    w->m = _mm512_inserti32x4(_mm512_inserti32x4(_mm512_inserti32x4(_mm512_castsi128_si512(sm[0][1]), sm[1][1], 1), sm[2][1], 2), sm[3][1], 3);
    w->dmin = _mm512_setr_ps(dmin[0], dmin[0], dmin[0], dmin[0], dmin[1], dmin[1], dmin[1], dmin[1],
                             dmin[2], dmin[2], dmin[2], dmin[2], dmin[3], dmin[3], dmin[3], dmin[3]);
}

/// Four rows by T activations (`a`: block b of the first), one block, into `acc[t * 2 + p]` (rows 2p,
/// 2p + 1) and `accm[t]` (the four rows' minimum terms).
KG_INLINE void kg4_tile(int T, const kg4_rows *w, const uint8_t *a, size_t a_stride, __m512 *acc, __m512 *accm) {
    __m512i is[2][4];
    for (int p = 0; p < 2; p++)
        for (int t = 0; t < T; t++) is[p][t] = _mm512_setzero_si512();
    for (int j = 0; j < 4; j++) {
        __m512i y0[4], y1[4];
        for (int t = 0; t < T; t++) {
            y0[t] = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(a + t * a_stride + 4 + 64 * j)));
            y1[t] = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(a + t * a_stride + 36 + 64 * j)));
        }
        for (int p = 0; p < 2; p++) {
            const __m512i q0 = w->q[p][2 * j], q1 = w->q[p][2 * j + 1], s = w->s[p][j];
            for (int t = 0; t < T; t++) is[p][t] = kg_group_pair(is[p][t], q0, y0[t], q1, y1[t], s);
        }
    }
    for (int t = 0; t < T; t++) {
        float da;
        __m256i bsums;
        const __m128i q8s = kg_activation(a + t * a_stride, &da, &bsums);
        const __m512i prod = _mm512_madd_epi16(w->m, _mm512_broadcast_i32x4(q8s));
        accm[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(-da), w->dmin), _mm512_cvtepi32_ps(prod), accm[t]);
        for (int p = 0; p < 2; p++)
            acc[t * 2 + p] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(da), w->d[p]), _mm512_cvtepi32_ps(is[p][t]), acc[t * 2 + p]);
    }
}

static KG_TARGET __attribute__((noinline)) void kg4_run(const sn_matmul_job *job, int first, int last,
                                                          const uint8_t *a, size_t a_stride, int tokens) {
    const size_t bb = 144;
    const int nb = job->blocks / 8;
    const int whole = first + (last - first) / 4 * 4;
    int tb = (int)((256u << 10) / ((size_t)nb * KQ_A_BYTES)) / 4 * 4;
    tb = tb < 8 ? 8 : tb > KG_TB ? KG_TB : tb;
    __m512 acc_all[KG_TB * 2], accm_all[KG_TB];
    for (int c = 0; c < tokens; c += tb) {
        const int tc = tokens - c < tb ? tokens - c : tb;
        const uint8_t *ac = a + (size_t)c * a_stride;
        for (int g = first; g < whole; g += 4) {
            for (int i = 0; i < tc; i++) {
                acc_all[2 * i] = acc_all[2 * i + 1] = accm_all[i] = _mm512_setzero_ps();
            }
            for (int b = 0; b < nb; b++) {
                const uint8_t *x[4];
                for (int r = 0; r < 4; r++) x[r] = job->w + (size_t)(g + r) * job->row_bytes + (size_t)b * bb;
                kg4_rows w;
                kg4_unpack(x, &w);
                for (int t0 = 0; t0 < tc; t0 += 4) {
                    const int T = tc - t0 < 4 ? tc - t0 : 4;
                    const uint8_t *ab = ac + (size_t)t0 * a_stride + (size_t)b * KQ_A_BYTES;
                    switch (T) {
                    case 4: kg4_tile(4, &w, ab, a_stride, acc_all + 2 * t0, accm_all + t0); break;
                    case 3: kg4_tile(3, &w, ab, a_stride, acc_all + 2 * t0, accm_all + t0); break;
                    case 2: kg4_tile(2, &w, ab, a_stride, acc_all + 2 * t0, accm_all + t0); break;
                    default: kg4_tile(1, &w, ab, a_stride, acc_all + 2 * t0, accm_all + t0); break;
                    }
                }
            }
            for (int t = 0; t < tc; t++) {
                float m[16];
                _mm512_storeu_ps(m, accm_all[t]);
                for (int r = 0; r < 4; r++) {
                    const __m512 v = acc_all[2 * t + r / 2];
                    const kq_acc s = {r % 2 ? _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)) : _mm512_castps512_ps256(v), _mm_loadu_ps(m + 4 * r), 0};
                    job->out[(size_t)(c + t) * job->out_stride + g + r] = kq_result(SN_Q4_K, &s);
                }
            }
        }
    }
    if (whole < last) kg_run_SN_Q4_K(job, whole, last, a, a_stride, tokens);
}

KG_TARGET void sn_kquant_gemm_vnni(const sn_matmul_job *job, int first, int last,
                                   const uint8_t *a, size_t a_stride, int tokens) {
    switch (job->type) {
    case SN_Q4_K: kg4_run(job, first, last, a, a_stride, tokens); break;
    case SN_Q6_K: kg_run_SN_Q6_K(job, first, last, a, a_stride, tokens); break;
    default: sn_kquant_rows(job, first, last, a, a_stride, tokens); break;
    }
}

KQ_TARGET void sn_dequantize_kquant(int type, const uint8_t *x, int blocks, float *out) {
    const size_t bb = kq_block_bytes(type);
    for (int b = 0; b < blocks; b++) {
        const uint8_t *block = x + (size_t)b * bb;
        kq_block w;
        kq_unpack(type, block, &w);
        // Per 16 elements: the scale and minimum factors, as the reference dequantizers form them.
        float dl[16], ml[16];
        int16_t sc[16], mn[16];
        if (type == SN_Q4_K || type == SN_Q5_K) {
            int16_t t[16];
            _mm256_storeu_si256((__m256i *)t, kq_scales_mins(block + 4));
            for (int k = 0; k < 16; k++) { sc[k] = t[k / 2]; mn[k] = t[8 + k / 2]; }
        } else {
            for (int g = 0; g < 8; g++) {
                int16_t t[16];
                _mm256_storeu_si256((__m256i *)t, w.sc[g]);
                sc[2 * g] = t[0];
                sc[2 * g + 1] = t[8];
            }
            if (type == SN_Q2_K) _mm256_storeu_si256((__m256i *)mn, w.m);
            else memset(mn, 0, sizeof mn);
        }
        for (int k = 0; k < 16; k++) {
            dl[k] = w.d * (float)sc[k];
            ml[k] = w.dmin * (float)mn[k];
        }
        float *y = out + 256 * (size_t)b;
        for (int g = 0; g < 8; g++) {
            __m256i q = w.q[g];
            if (type == SN_Q3_K) q = _mm256_sub_epi8(q, w.h[g]);
            if (type == SN_Q6_K) q = _mm256_sub_epi8(q, _mm256_set1_epi8(32));
            int8_t qb[32];
            _mm256_storeu_si256((__m256i *)qb, q);
            for (int c = 0; c < 4; c++) {
                const int k = 2 * g + c / 2;
                const __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(qb + 8 * c))));
                __m256 r = _mm256_mul_ps(_mm256_set1_ps(dl[k]), v);
                if (type == SN_Q2_K || type == SN_Q4_K || type == SN_Q5_K) r = _mm256_sub_ps(r, _mm256_set1_ps(ml[k]));
                _mm256_storeu_ps(y + 32 * g + 8 * c, r);
            }
        }
    }
}

KQ_TARGET void sn_quantize_q8_K(const float *x, int blocks, uint8_t *out) {
    for (int b = 0; b < blocks; b++) {
        const float *v = x + 256 * (size_t)b;
        uint8_t *block = out + (size_t)b * KQ_A_BYTES;
        float amax = 0, max = 0;
        for (int j = 0; j < 256; j++) {
            const float ax = fabsf(v[j]);
            if (ax > amax) { amax = ax; max = v[j]; }
        }
        if (amax == 0) {
            memset(block, 0, KQ_A_BYTES);
            continue;
        }
        const float iscale = -127.f / max;
        const __m256 mul = _mm256_set1_ps(iscale);
        int8_t *q = (int8_t *)(block + 4);
        for (int j = 0; j < 256; j += 8) {
            __m256 y = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(v + j), mul), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            y = _mm256_and_ps(y, _mm256_cmp_ps(y, y, _CMP_ORD_Q));  // NaN -> 0
            y = _mm256_min_ps(_mm256_max_ps(y, _mm256_set1_ps(-128)), _mm256_set1_ps(127));
            int32_t tmp[8];
            _mm256_storeu_si256((__m256i *)tmp, _mm256_cvtps_epi32(y));
            for (int k = 0; k < 8; k++) q[j + k] = (int8_t)tmp[k];
        }
        for (int g = 0; g < 16; g++) {
            int16_t sum = 0;
            for (int k = 0; k < 16; k++) sum = (int16_t)(sum + q[16 * g + k]);
            memcpy(block + 260 + 2 * g, &sum, 2);
        }
        const float d = 1 / iscale;
        memcpy(block, &d, 4);
    }
}

#else

void sn_kquant_rows(const sn_matmul_job *job, int first, int last, const uint8_t *a, size_t a_stride, int tokens) {
    (void)job; (void)first; (void)last; (void)a; (void)a_stride; (void)tokens;
}
void sn_quantize_q8_K(const float *x, int blocks, uint8_t *out) { (void)x; (void)blocks; (void)out; }
void sn_dequantize_kquant(int type, const uint8_t *x, int blocks, float *out) { (void)type; (void)x; (void)blocks; (void)out; }
void sn_kquant_gemm_vnni(const sn_matmul_job *job, int first, int last, const uint8_t *a, size_t a_stride, int tokens) {
    (void)job; (void)first; (void)last; (void)a; (void)a_stride; (void)tokens;
}

#endif
