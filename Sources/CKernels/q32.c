// Matrix products and dequantizers of the 32-element weight formats kept as ggml rows (not packed):
// Q4_0, Q5_0 and Q5_1 (see include/sn_kernels.h, `sn_matmul_rows_q32`). Each is bit-identical to
// its Swift reference in Kernels (Q4_0.dot, Q5_0.dot, Q5_1.dot), which the tests compare it with.
//
// The integer part of every product is exact (u8 x i8 pairs by vpmaddubsw, never saturating for
// these ranges: 31 * 128 * 2 < 32767), so only the float operations need ggml's order:
//  - Q4_0 (llama.cpp's repacked q4_0_8x8 kernels): per block, isum = sum q_w q_a, exact;
//    acc = fma(float(isum), d_w * d_a, acc). Eight (row, activation) pairs share one vector:
//    lane i of the accumulator is pair i. The weights' offset of 8 is taken out as 8 * sum q_a.
//    These read ggml rows: the rows after a matrix's last packed group of eight; the groups
//    themselves take `q4_0_matmul`'s packed kernels (below), with the same numbers.
//  - Q5_0 (ggml_vec_dot_q5_0_q8_0, AVX2): eight lanes per pair, lane k = products of elements
//    4k..4k+3 (q_w - 16 as u - 16: 16 * their q_a sum is subtracted); acc_k = fma(d_w d_a, lane_k,
//    acc_k); then hsum8.
//  - Q5_1 (ggml_vec_dot_q5_1_q8_1, AVX2): as Q5_0 without the offset, plus m_w * s_a summed in
//    block order (products of two F16 values: exact).
//    Both also have an AVX512-VNNI/BW variant of the same integers (`q5_tile_vnni`).
#include "sn_kernels.h"

#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>

#include "sn_internal.h"

#define Q_TARGET __attribute__((target("avx2,fma,f16c")))
#define Q_INLINE static inline __attribute__((always_inline)) Q_TARGET

/// Bytes per weight block and offsets of its fields.
typedef struct { int bytes, qh, qs; } q_layout;

Q_INLINE q_layout layout_of(int type) {
    switch (type) {
    case SN_Q4_0: return (q_layout){18, -1, 2};
    case SN_Q5_0: return (q_layout){22, 2, 6};
    default: return (q_layout){24, 4, 8};  // SN_Q5_1
    }
}

/// The 32 unsigned quants of a block (Q4_0: 0..15, Q5: 0..31), element j in byte j.
Q_INLINE __m256i q_unpack(const uint8_t *block, int type) {
    const q_layout l = layout_of(type);
    const __m128i tmp = _mm_loadu_si128((const __m128i *)(block + l.qs));
    __m256i q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(tmp, 4), tmp), _mm256_set1_epi8(0x0f));
    if (type == SN_Q4_0) return q;
    // ggml's bytes_from_bits_32: byte j = 0xff when bit j of qh is set.
    uint32_t qh;
    memcpy(&qh, block + l.qh, 4);
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    __m256i bits = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), shuf);
    bits = _mm256_cmpeq_epi8(_mm256_or_si256(bits, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe)), _mm256_set1_epi64x(-1));
    return _mm256_or_si256(q, _mm256_and_si256(bits, _mm256_set1_epi8(0x10)));
}

/// Lane sums (i32) of u8 x i8 products, four consecutive bytes per lane.
Q_INLINE __m256i q_dot4(__m256i u, __m256i y) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, y), _mm256_set1_epi16(1));
}

/// The sums of p0..p7 (each eight i32 lanes), sum i in lane i.
Q_INLINE __m256i q_reduce8(const __m256i p[8]) {
    const __m256i a = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
    const __m256i b = _mm256_hadd_epi32(_mm256_hadd_epi32(p[4], p[5]), _mm256_hadd_epi32(p[6], p[7]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20), _mm256_permute2x128_si256(a, b, 0x31));
}

/// Activation t of the call: `a + t * a_stride`, blocks of `ab` bytes (34: Q8_0, 36: Q8_1), quants at `aq`.
typedef struct {
    const uint8_t *a;
    size_t a_stride;
    int ab, aq;
} q_acts;

/// 8 * (sum of the 32 quants) of a Q8_0 activation block: Q4_0's offset, once per block.
Q_INLINE int32_t q8_sum8(const uint8_t *a) {
    const __m256i s = q_dot4(_mm256_set1_epi8(8), _mm256_loadu_si256((const __m256i *)(a + 2)));
    __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
    return _mm_cvtsi128_si32(h);
}

Q_INLINE uint16_t q_bits16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return h;
}

/// Q4_0, one activation (`da`, `ys`: its per-block scale and 8 * quant sum) against eight rows:
/// lane i of the accumulator is row i.
Q_INLINE void q4_0_rows8(const uint8_t *const r[8], int blocks, const uint8_t *a, const float *da,
                         const int32_t *ys, float out[8]) {
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < blocks; b++) {
        const size_t o = (size_t)b * 18;
        const __m256i y = _mm256_loadu_si256((const __m256i *)(a + (size_t)b * 34 + 2));
        __m256i p[8];
        for (int i = 0; i < 8; i++) p[i] = q_dot4(q_unpack(r[i] + o, SN_Q4_0), y);
        const __m256 dw = _mm256_cvtph_ps(_mm_setr_epi16(
            (short)q_bits16(r[0] + o), (short)q_bits16(r[1] + o), (short)q_bits16(r[2] + o), (short)q_bits16(r[3] + o),
            (short)q_bits16(r[4] + o), (short)q_bits16(r[5] + o), (short)q_bits16(r[6] + o), (short)q_bits16(r[7] + o)));
        const __m256i isum = _mm256_sub_epi32(q_reduce8(p), _mm256_set1_epi32(ys[b]));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dw, _mm256_set1_ps(da[b])), acc);
    }
    _mm256_storeu_ps(out, acc);
}

/// Q4_0, two rows against four activations (`a4`: their blocks; `da4`, `ys4`: per block the four
/// activations' scales and 8 * quant sums): lane 4 r + t is (row r, activation t).
Q_INLINE void q4_0_rows2x4(const uint8_t *r0, const uint8_t *r1, int blocks, const uint8_t *const a4[4],
                           const float *da4, const int32_t *ys4, float out[8]) {
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < blocks; b++) {
        const size_t o = (size_t)b * 18;
        const __m256i u0 = q_unpack(r0 + o, SN_Q4_0), u1 = q_unpack(r1 + o, SN_Q4_0);
        __m256i p[8];
        for (int t = 0; t < 4; t++) {
            const __m256i y = _mm256_loadu_si256((const __m256i *)(a4[t] + (size_t)b * 34 + 2));
            p[t] = q_dot4(u0, y);
            p[4 + t] = q_dot4(u1, y);
        }
        const __m256 dw = _mm256_set_m128(_mm_set1_ps(sn_half(r1 + o)), _mm_set1_ps(sn_half(r0 + o)));
        const __m256 da = _mm256_broadcast_ps((const __m128 *)(da4 + 4 * (size_t)b));
        const __m256i ys = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(ys4 + 4 * (size_t)b)));
        const __m256i isum = _mm256_sub_epi32(q_reduce8(p), ys);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dw, da), acc);
    }
    _mm256_storeu_ps(out, acc);
}

/// Defines NAME: Q5_0 / Q5_1, R rows by T activations, eight lanes per pair in ggml's order.
/// UNPACK(w, type): a block's 32 unsigned quants (0..31); OFFSET(y): what Q5_0's lane sums need
/// from the activation's quants y (its offset of 16); DOT(u, y, off, one): the eight lane sums
/// (Q5_0: minus 16 * the activation's four-quant sums; Q5_1 (`one`): without the offset).
#define Q5_TILE(NAME, INLINE, UNPACK, OFFSET, DOT)                                                          \
    INLINE void NAME(int type, int R, int T, const uint8_t *const *rows, int blocks, q_acts A, int t0,      \
                     float *out, size_t out_stride) {                                                       \
        const q_layout l = layout_of(type);                                                                 \
        const int one = type == SN_Q5_1;                                                                    \
        __m256 acc[4][4];                                                                                   \
        float summs[4][4];                                                                                  \
        for (int r = 0; r < R; r++)                                                                         \
            for (int t = 0; t < T; t++) { acc[r][t] = _mm256_setzero_ps(); summs[r][t] = 0; }               \
        for (int b = 0; b < blocks; b++) {                                                                  \
            __m256i y[4], off[4];                                                                           \
            float da[4], sa[4];                                                                             \
            for (int t = 0; t < T; t++) {                                                                   \
                const uint8_t *a = A.a + (size_t)(t0 + t) * A.a_stride + (size_t)b * A.ab;                  \
                y[t] = _mm256_loadu_si256((const __m256i *)(a + A.aq));                                     \
                da[t] = sn_half(a);                                                                         \
                sa[t] = one ? sn_half(a + 2) : 0;                                                           \
                if (!one) off[t] = OFFSET(y[t]);                                                            \
            }                                                                                               \
            for (int r = 0; r < R; r++) {                                                                   \
                const uint8_t *w = rows[r] + (size_t)b * l.bytes;                                           \
                const __m256i u = UNPACK(w, type);                                                          \
                const float dw = sn_half(w);                                                                \
                const float mw = one ? sn_half(w + 2) : 0;                                                  \
                for (int t = 0; t < T; t++) {                                                               \
                    const __m256i lanes = DOT(u, y[t], off[t], one);                                        \
                    const __m256 d = _mm256_set1_ps(dw * da[t]);                                            \
                    acc[r][t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(lanes), acc[r][t]);                   \
                    if (one) summs[r][t] += mw * sa[t]; /* both F16 values: the product is exact */         \
                }                                                                                           \
            }                                                                                               \
        }                                                                                                   \
        for (int r = 0; r < R; r++)                                                                         \
            for (int t = 0; t < T; t++) out[t * out_stride + r] = sn_hsum8(acc[r][t]) + summs[r][t];        \
    }

#define Q5_OFFSET_AVX2(y) q_dot4(_mm256_set1_epi8(16), y)
#define Q5_DOT_AVX2(u, y, off, one) ((one) ? q_dot4(u, y) : _mm256_sub_epi32(q_dot4(u, y), off))
Q5_TILE(q5_tile, Q_INLINE, q_unpack, Q5_OFFSET_AVX2, Q5_DOT_AVX2)

// The same tile with AVX512-VNNI and BW (the same integers, so the same bits): vpdpbusd in place
// of vpmaddubsw + vpmaddwd, Q5_0's lanes starting at minus the offset's share, and the fifth bits
// added from qh as a byte mask (one masked add) instead of ggml's shuffle-compare expansion.
#define Q5V_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define Q5V_INLINE static inline __attribute__((always_inline)) Q5V_TARGET

Q5V_INLINE __m256i q5v_unpack(const uint8_t *block, int type) {
    const q_layout l = layout_of(type);
    const __m128i tmp = _mm_loadu_si128((const __m128i *)(block + l.qs));
    const __m256i q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(tmp, 4), tmp), _mm256_set1_epi8(0x0f));
    uint32_t qh;
    memcpy(&qh, block + l.qh, 4);  // bit j: element j's fifth bit
    return _mm256_mask_add_epi8(q, (__mmask32)qh, q, _mm256_set1_epi8(0x10));
}

#define Q5_OFFSET_VNNI(y) _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(16), y))
#define Q5_DOT_VNNI(u, y, off, one) _mm256_dpbusd_epi32((one) ? _mm256_setzero_si256() : (off), u, y)
Q5_TILE(q5_tile_vnni, Q5V_INLINE, q5v_unpack, Q5_OFFSET_VNNI, Q5_DOT_VNNI)

/// Rows [first, last) of a Q4_0 job against `tokens` activations: eight rows of one activation
/// at a time, or two rows of four; a last partial group repeats its last row or activation.
static Q_TARGET __attribute__((noinline)) void q4_0_rows(const sn_matmul_job *job, int first, int last, q_acts A, int tokens) {
    const size_t os = job->out_stride;
    const int nb = job->blocks;
    float da4[4 * SN_MAX_BLOCKS] __attribute__((aligned(32)));
    int32_t ys4[4 * SN_MAX_BLOCKS] __attribute__((aligned(32)));
    float res[8];
    for (int t0 = 0; t0 < tokens; t0 += 4) {
        const int nt = tokens - t0 < 4 ? tokens - t0 : 4;
        const uint8_t *a4[4];
        for (int t = 0; t < 4; t++) a4[t] = A.a + (size_t)(t0 + (t < nt ? t : nt - 1)) * A.a_stride;
        if (nt == 1) {
            for (int b = 0; b < nb; b++) {
                da4[b] = sn_half(a4[0] + (size_t)b * 34);
                ys4[b] = q8_sum8(a4[0] + (size_t)b * 34);
            }
            for (int r = first; r < last; r += 8) {
                const int n = last - r < 8 ? last - r : 8;
                const uint8_t *rows[8];
                for (int i = 0; i < 8; i++) rows[i] = job->w + (size_t)(r + (i < n ? i : n - 1)) * job->row_bytes;
                q4_0_rows8(rows, nb, a4[0], da4, ys4, res);
                for (int i = 0; i < n; i++) job->out[(size_t)t0 * os + r + i] = res[i];
            }
            continue;
        }
        for (int b = 0; b < nb; b++)
            for (int t = 0; t < 4; t++) {
                da4[4 * b + t] = sn_half(a4[t] + (size_t)b * 34);
                ys4[4 * b + t] = q8_sum8(a4[t] + (size_t)b * 34);
            }
        for (int r = first; r < last; r += 2) {
            const int nr = last - r < 2 ? last - r : 2;
            const uint8_t *r0 = job->w + (size_t)r * job->row_bytes;
            q4_0_rows2x4(r0, nr == 2 ? r0 + job->row_bytes : r0, nb, a4, da4, ys4, res);
            for (int i = 0; i < 8; i++)
                if (i / 4 < nr && i % 4 < nt) job->out[(size_t)(t0 + i % 4) * os + r + i / 4] = res[i];
        }
    }
}

#define Q5_CASES(TILE, TYPE)                                                                            \
    if (R == 4) TILE(TYPE, 4, 1, rw, nb, A, t0, ot, os);                                                \
    else if (T == 4) { if (R == 2) TILE(TYPE, 2, 4, rw, nb, A, t0, ot, os); else TILE(TYPE, 1, 4, rw, nb, A, t0, ot, os); } \
    else if (T == 3) { if (R == 2) TILE(TYPE, 2, 3, rw, nb, A, t0, ot, os); else TILE(TYPE, 1, 3, rw, nb, A, t0, ot, os); } \
    else if (T == 2) { if (R == 2) TILE(TYPE, 2, 2, rw, nb, A, t0, ot, os); else TILE(TYPE, 1, 2, rw, nb, A, t0, ot, os); } \
    else { if (R == 2) TILE(TYPE, 2, 1, rw, nb, A, t0, ot, os); else TILE(TYPE, 1, 1, rw, nb, A, t0, ot, os); }

/// Defines NAME: rows [first, last) of a Q5_0 or Q5_1 job with TILE (`q5_tile`, `q5_tile_vnni`):
/// one activation four rows at a time, several two rows by up to four activations at a time.
#define Q5_ROWS(NAME, TARGET, TILE)                                                                        \
    static TARGET void NAME(const sn_matmul_job *job, int first, int last, q_acts A, int tokens) {        \
        const size_t os = job->out_stride;                                                                 \
        const int nb = job->blocks;                                                                        \
        for (int t0 = 0; t0 < tokens; t0 += 4) {                                                           \
            const int T = tokens == 1 ? 1 : (tokens - t0 < 4 ? tokens - t0 : 4);                           \
            for (int r = first; r < last;) {                                                               \
                const int R = tokens == 1 && last - r >= 4 ? 4 : (last - r >= 2 ? 2 : 1);                  \
                const uint8_t *rw[4];                                                                      \
                for (int i = 0; i < R; i++) rw[i] = job->w + (size_t)(r + i) * job->row_bytes;            \
                float *ot = job->out + (size_t)t0 * os + r;                                                \
                if (job->type == SN_Q5_0) {                                                                \
                    Q5_CASES(TILE, SN_Q5_0)                                                                \
                } else {                                                                                   \
                    Q5_CASES(TILE, SN_Q5_1)                                                                \
                }                                                                                          \
                r += R;                                                                                    \
            }                                                                                              \
            if (tokens == 1) break;                                                                        \
        }                                                                                                  \
    }

Q5_ROWS(q5_rows, Q_TARGET, q5_tile)
Q5_ROWS(q5_rows_vnni, Q5V_TARGET, q5_tile_vnni)

// Q4_0 on packed groups of eight rows (`sn_pack_rows`: per block the eight F16 scales, then
// vector k = dword k of each row's quant bytes, lane i = row i), llama.cpp's q4_0_8x8 layout and
// order: lane i holds four quants of row i, the activation's matching four quants are broadcast to
// every lane, so eight integer dot steps per block give the eight rows' isums with no horizontal
// sums, then acc = fma(float(isum), d_w * d_a, acc) per lane, as `q4_0_rows8`. Each lane starts at
// -8 * sum q_a (the weights' offset of 8). With AVX512-VNNI a step is one vpdpbusd; with AVX2,
// vpmaddubsw + vpmaddwd (pair sums at most 15 * 127 * 2: never saturated). The integer sums are
// exact either way, so both give the bits of the ggml-row kernels above.
#define Q4V_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define Q4V_INLINE static inline __attribute__((always_inline)) Q4V_TARGET

Q_INLINE __m256i q4p_bcast(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/// The activations' per-block values the packed kernels take, for T <= 8 activations from `a`:
/// `da8[8 b + t]` the scale, `nys8[8 b + t]` -8 * (sum of the 32 quants).
Q_INLINE void q4p_activation_sums(const uint8_t *a, size_t a_stride, int T, int blocks, float *da8, int32_t *nys8) {
    for (int t = 0; t < T; t++)
        for (int b = 0; b < blocks; b++) {
            const uint8_t *blk = a + (size_t)t * a_stride + (size_t)b * 34;
            da8[8 * b + t] = sn_half(blk);
            nys8[8 * b + t] = -q8_sum8(blk);
        }
}

/// Stores lanes [lo, hi) of `acc` (rows) at `out`.
Q_INLINE void q4p_store(__m256 acc, int lo, int hi, float *out) {
    float lanes[8];
    _mm256_storeu_ps(lanes, acc);
    for (int i = lo; i < hi; i++) out[i] = lanes[i];
}

/// Defines NAME: one packed group (`p`: its first block) by T <= MAX_T activations, with STEP(s, q,
/// y) the integer dot step (s plus, per lane, four u8 quants q times four i8 quants y); rows [lo, hi)
/// of the group are written (`out + t * out_stride`: row 0 of the group, activation t).
#define Q4P_GROUP(NAME, INLINE, MAX_T, STEP)                                                               \
    INLINE void NAME(int T, const uint8_t *p, int blocks, const uint8_t *a, size_t a_stride,              \
                     const float *da8, const int32_t *nys8, int lo, int hi, float *out, size_t out_stride) { \
        __m256 acc[MAX_T];                                                                                 \
        for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();                                          \
        const __m256i low = _mm256_set1_epi8(0x0f);                                                        \
        for (int b = 0; b < blocks; b++, p += 144) {                                                       \
            const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));                       \
            __m256i q[8]; /* q[g], lane i: elements 4g..4g+3 of row i */                                   \
            for (int k = 0; k < 4; k++) {                                                                  \
                const __m256i x = _mm256_loadu_si256((const __m256i *)(p + 16 + 32 * k));                  \
                q[k] = _mm256_and_si256(x, low);                                                           \
                q[k + 4] = _mm256_and_si256(_mm256_srli_epi16(x, 4), low);                                 \
            }                                                                                              \
            for (int t = 0; t < T; t++) {                                                                  \
                const uint8_t *y = a + (size_t)t * a_stride + (size_t)b * 34 + 2;                          \
                /* Two chains of four, so that the latencies overlap (integer sums: any order). */         \
                __m256i s0 = _mm256_set1_epi32(nys8[8 * b + t]), s1 = _mm256_setzero_si256();              \
                for (int g = 0; g < 8; g += 2) {                                                           \
                    s0 = STEP(s0, q[g], q4p_bcast(y + 4 * g));                                             \
                    s1 = STEP(s1, q[g + 1], q4p_bcast(y + 4 * g + 4));                                     \
                }                                                                                          \
                const __m256 d = _mm256_mul_ps(dw, _mm256_set1_ps(da8[8 * b + t]));                        \
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(s0, s1)), d, acc[t]);         \
            }                                                                                              \
        }                                                                                                  \
        for (int t = 0; t < T; t++) q4p_store(acc[t], lo, hi, out + (size_t)t * out_stride);               \
    }

#define Q4P_STEP_VNNI(s, q, y) _mm256_dpbusd_epi32(s, q, y)
#define Q4P_STEP_AVX2(s, q, y) _mm256_add_epi32(s, q_dot4(q, y))
Q4P_GROUP(q4p_group_vnni, Q4V_INLINE, 8, Q4P_STEP_VNNI)
Q4P_GROUP(q4p_group_avx2, Q_INLINE, 4, Q4P_STEP_AVX2)  // the 16 vector registers: four activations

#define Q4P_CASES(KERNEL, T, ...)                                      \
    switch (T) {                                                       \
    case 8: KERNEL(8, __VA_ARGS__); break;                             \
    case 7: KERNEL(7, __VA_ARGS__); break;                             \
    case 6: KERNEL(6, __VA_ARGS__); break;                             \
    case 5: KERNEL(5, __VA_ARGS__); break;                             \
    case 4: KERNEL(4, __VA_ARGS__); break;                             \
    case 3: KERNEL(3, __VA_ARGS__); break;                             \
    case 2: KERNEL(2, __VA_ARGS__); break;                             \
    default: KERNEL(1, __VA_ARGS__); break;                            \
    }

/// Defines NAME: rows [first, last) of a Q4_0 job, all inside its packed groups, in chunks of up to
/// CHUNK activations against one group at a time (KERNEL: `q4p_group_*`).
#define Q4P_ROWS(NAME, TARGET, KERNEL, CHUNK)                                                               \
    static TARGET __attribute__((noinline)) void NAME(const sn_matmul_job *job, int first, int last,      \
                                                      const uint8_t *a, size_t a_stride, int tokens) {    \
        float da8[8 * SN_MAX_BLOCKS] __attribute__((aligned(32)));                                         \
        int32_t nys8[8 * SN_MAX_BLOCKS] __attribute__((aligned(32)));                                      \
        const size_t os = job->out_stride;                                                                 \
        const int nb = job->blocks;                                                                        \
        for (int c = 0; c < tokens; c += CHUNK) {                                                          \
            const int T = tokens - c < CHUNK ? tokens - c : CHUNK;                                         \
            const uint8_t *at = a + (size_t)c * a_stride;                                                  \
            q4p_activation_sums(at, a_stride, T, nb, da8, nys8);                                           \
            for (int g = first / 8 * 8; g < last; g += 8) {                                                \
                const int lo = first > g ? first - g : 0, hi = last - g < 8 ? last - g : 8;                \
                const uint8_t *p = job->w + (size_t)g * job->row_bytes;                                    \
                float *o = job->out + (size_t)c * os + g;                                                  \
                Q4P_CASES(KERNEL, T, p, nb, at, a_stride, da8, nys8, lo, hi, o, os)                        \
            }                                                                                              \
        }                                                                                                  \
    }

Q4P_ROWS(q4p_rows_vnni, Q4V_TARGET, q4p_group_vnni, 8)
Q4P_ROWS(q4p_rows_avx2, Q_TARGET, q4p_group_avx2, 4)

/// Q4_0: the packed groups (`rows / 8` of them) with the packed kernels, rows after them (ggml
/// rows, `sn_pack_rows`) with `q4_0_rows`.
static Q_TARGET void q4_0_matmul(const sn_matmul_job *job, int first, int last, q_acts A, int tokens) {
    const int packed = job->rows / 8 * 8;
    if (first < packed) {
        const int end = last < packed ? last : packed;
        if (sn_use_vnni()) q4p_rows_vnni(job, first, end, A.a, A.a_stride, tokens);
        else q4p_rows_avx2(job, first, end, A.a, A.a_stride, tokens);
    }
    if (last > packed) q4_0_rows(job, first > packed ? first : packed, last, A, tokens);
}

Q_TARGET void sn_pack_q4_0(uint8_t *w, size_t row_bytes, int rows, int blocks, uint8_t *scratch) {
    for (int g = 0; g + 8 <= rows; g += 8) {
        uint8_t *group = w + (size_t)g * row_bytes;
        memcpy(scratch, group, 8 * row_bytes);
        for (int b = 0; b < blocks; b++) {
            uint8_t *dst = group + (size_t)b * 144;
            for (int i = 0; i < 8; i++) {
                const uint8_t *src = scratch + (size_t)i * row_bytes + (size_t)b * 18;
                memcpy(dst + 2 * i, src, 2);
                for (int k = 0; k < 4; k++) memcpy(dst + 16 + 32 * k + 4 * i, src + 2 + 4 * k, 4);
            }
        }
    }
}

Q_TARGET void sn_unpack_q4_0(const uint8_t *w, size_t row_bytes, int rows, int blocks, int r, uint8_t *out) {
    const int g = r / 8 * 8, i = r - g;
    if (g + 8 > rows) { memcpy(out, w + (size_t)r * row_bytes, row_bytes); return; }
    for (int b = 0; b < blocks; b++) {
        const uint8_t *src = w + (size_t)g * row_bytes + (size_t)b * 144;
        uint8_t *dst = out + (size_t)b * 18;
        memcpy(dst, src + 2 * i, 2);
        for (int k = 0; k < 4; k++) memcpy(dst + 2 + 4 * k, src + 16 + 32 * k + 4 * i, 4);
    }
}

Q_TARGET void sn_matmul_rows_q32(const sn_matmul_job *job, int first, int last,
                                 const uint8_t *a, size_t a_stride, int tokens) {
    const int q8_1 = job->type == SN_Q5_1;
    const q_acts A = {a, a_stride, q8_1 ? 36 : 34, q8_1 ? 4 : 2};
    if (job->type == SN_Q4_0) q4_0_matmul(job, first, last, A, tokens);
    else if (sn_use_vnni()) q5_rows_vnni(job, first, last, A, tokens);
    else q5_rows(job, first, last, A, tokens);
}

Q_TARGET void sn_dequantize_q32(int type, const uint8_t *row, int blocks, float *out) {
    const q_layout l = layout_of(type);
    const __m256i offset = _mm256_set1_epi32(type == SN_Q4_0 ? 8 : type == SN_Q5_0 ? 16 : 0);
    for (int b = 0; b < blocks; b++) {
        const uint8_t *w = row + (size_t)b * l.bytes;
        const __m256i u = q_unpack(w, type);
        const __m256 d = _mm256_set1_ps(sn_half(w));
        const __m256 m = _mm256_set1_ps(type == SN_Q5_1 ? sn_half(w + 2) : 0);
        for (int k = 0; k < 4; k++) {
            const __m256i q = _mm256_sub_epi32(
                _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)((const uint8_t *)&u + 8 * k))), offset);
            __m256 x = _mm256_mul_ps(_mm256_cvtepi32_ps(q), d);
            if (type == SN_Q5_1) x = _mm256_add_ps(x, m);  // two roundings, as ggml's dequantize_row_q5_1
            _mm256_storeu_ps(out + 32 * (size_t)b + 8 * k, x);
        }
    }
}

#else  // not x86-64: the Swift reference paths are used.

void sn_matmul_rows_q32(const sn_matmul_job *job, int first, int last, const uint8_t *a, size_t a_stride, int tokens) {
    (void)job; (void)first; (void)last; (void)a; (void)a_stride; (void)tokens;
}
void sn_dequantize_q32(int type, const uint8_t *row, int blocks, float *out) {
    (void)type; (void)row; (void)blocks; (void)out;
}

#endif
