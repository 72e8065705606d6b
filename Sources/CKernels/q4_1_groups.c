// Q4_1 prompt rows in groups of sixteen rows (AVX512-VNNI), for the tolerance prompt path
// (`PrefillMode.blas`): the integer products of the exact kernels (vnni.c), each block's dot scaled
// once in F32 instead of in ggml's eight float lanes, so within a tolerance of them, not their bits.
//
// Why: the exact kernels reproduce ggml's order for every (row, activation) pair: per 32-element
// block eight int32 lanes, each converted and multiplied into its own float lane, then a horizontal
// sum. That float work (a conversion and an FMA of eight lanes per pair and block) costs more than
// the integer products themselves. Here one 512-bit register holds four consecutive weights of each
// of sixteen rows, so one `vpdpbusd` against four broadcast activation bytes advances sixteen rows,
// and a block's sixteen integer dots are scaled by one conversion, one multiply and two FMAs
// (`d_w * d_a * dot + m_w * s_a`).
//
// Each (row, activation) output is computed by the same instructions in the same order whatever the
// number of activations, the row's place in its group or the group's in the matrix: a row's result
// depends only on its own input, like the exact kernels' (the engine batches prompt rows freely).
//
// A group is repacked from the matrix's rows (the exact kernels' packed four-row layout, or ggml's)
// per call into a buffer the caller owns (`sn_q4_1_group_bytes`): the model is never held twice.
// See include/sn_kernels.h and Kernels' Q4_1Groups.swift.
#include "sn_kernels.h"

#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>

#include "sn_internal.h"

#define G_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define G_INLINE static inline __attribute__((always_inline)) G_TARGET

/// Per 32-element block of a group: quants [8 steps][16 rows][4 bytes], then d_w [16] and m_w [16]
/// as floats.
#define G_QUANTS 512
#define G_BLOCK (G_QUANTS + 2 * 16 * 4)
/// A Q8_1 activation block: d, s (F16), 32 quants.
#define G_A_BYTES 36

size_t sn_q4_1_group_bytes(int blocks) { return (size_t)blocks * G_BLOCK; }

/// Rows of a group as the exact kernels see them (`sn_row_at`), or ggml's rows when not packed.
G_INLINE sn_row g_row(const uint8_t *w, size_t row_bytes, int rows, int packed, int r) {
    if (packed) {
        const sn_matmul_job job = {SN_Q4_1, w, row_bytes, rows, 0, NULL, 0};
        return sn_row_at(&job, r);
    }
    const uint8_t *row = w + (size_t)r * row_bytes;
    return (sn_row){row, row + 4, 20, -1, NULL};
}

/// Any rows (a matrix's last, fewer than sixteen, or not packed): one element at a time.
static G_TARGET void g_repack_rows(const uint8_t *w, size_t row_bytes, int rows, int packed, int first, int count, int blocks,
                          uint8_t *out) {
    for (int b = 0; b < blocks; b++) {
        uint8_t *dst = out + (size_t)b * G_BLOCK;
        float *d = (float *)(dst + G_QUANTS), *m = d + 16;
        memset(dst, 0, G_BLOCK);
        for (int r = 0; r < count; r++) {
            const sn_row row = g_row(w, row_bytes, rows, packed, first + r);
            const uint8_t *q = row.q + (size_t)b * row.stride;
            d[r] = sn_half(row.d + (size_t)b * row.stride);
            m[r] = sn_half(row.d + (size_t)b * row.stride + 2);
            for (int i = 0; i < 32; i++) {
                const uint8_t v = row.shift < 0 ? (i < 16 ? q[i] & 0xF : q[i - 16] >> 4) : (q[i] >> row.shift) & 0xF;
                dst[64 * (i / 4) + 4 * r + i % 4] = v;
            }
        }
    }
}

/// Sixteen packed rows (four of the exact kernels' four-row groups; `first` a multiple of 4): per
/// block, each four-row group's 64 quant bytes hold rows 4i and 4i+1 (low and high nibbles, bytes
/// 0-31) and rows 4i+2 and 4i+3 (bytes 32-63), element e in byte e. Step k (elements 4k..4k+3) of
/// row 4i+j is then dword k (j < 2) or 8 + k (j >= 2) of group i's quants, nibble j % 2: split the
/// nibbles, interleave each group's four rows per step, and gather the four groups' 128-bit lanes.
G_INLINE void g_repack_packed(const uint8_t *w, size_t row_bytes, int first, int blocks, uint8_t *out) {
    const __m512i low = _mm512_set1_epi8(0x0F);
    // Step k's four rows of one group: lo[k], hi[k], lo[8 + k], hi[8 + k] (k = 0..3, then 4..7).
    const __m512i steps0 = _mm512_setr_epi32(0, 16, 8, 24, 1, 17, 9, 25, 2, 18, 10, 26, 3, 19, 11, 27);
    const __m512i steps1 = _mm512_setr_epi32(4, 20, 12, 28, 5, 21, 13, 29, 6, 22, 14, 30, 7, 23, 15, 31);
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    const uint8_t *g[4];
    for (int i = 0; i < 4; i++) g[i] = w + (size_t)(first + 4 * i) * row_bytes;
    for (int b = 0; b < blocks; b++) {
        uint8_t *dst = out + (size_t)b * G_BLOCK;
        __m512i s[2][4];
        for (int i = 0; i < 4; i++) {
            const __m512i z = _mm512_loadu_si512(g[i] + (size_t)b * 80 + 16);
            const __m512i lo = _mm512_and_si512(z, low), hi = _mm512_and_si512(_mm512_srli_epi16(z, 4), low);
            s[0][i] = _mm512_permutex2var_epi32(lo, steps0, hi);
            s[1][i] = _mm512_permutex2var_epi32(lo, steps1, hi);
        }
        for (int h = 0; h < 2; h++) {
            // s[h][i]'s 128-bit lane L is step 4h + L of group i's four rows.
            const __m512i x0 = _mm512_shuffle_i64x2(s[h][0], s[h][1], 0x44), x1 = _mm512_shuffle_i64x2(s[h][2], s[h][3], 0x44);
            const __m512i y0 = _mm512_shuffle_i64x2(s[h][0], s[h][1], 0xEE), y1 = _mm512_shuffle_i64x2(s[h][2], s[h][3], 0xEE);
            _mm512_storeu_si512(dst + 64 * (4 * h + 0), _mm512_shuffle_i64x2(x0, x1, 0x88));
            _mm512_storeu_si512(dst + 64 * (4 * h + 1), _mm512_shuffle_i64x2(x0, x1, 0xDD));
            _mm512_storeu_si512(dst + 64 * (4 * h + 2), _mm512_shuffle_i64x2(y0, y1, 0x88));
            _mm512_storeu_si512(dst + 64 * (4 * h + 3), _mm512_shuffle_i64x2(y0, y1, 0xDD));
        }
        // Each group's d, m of its four rows (F16, interleaved): sixteen d, then sixteen m.
        const __m256i h01 = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)(g[1] + (size_t)b * 80)),
                                             _mm_loadu_si128((const __m128i *)(g[0] + (size_t)b * 80)));
        const __m256i h23 = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)(g[3] + (size_t)b * 80)),
                                             _mm_loadu_si128((const __m128i *)(g[2] + (size_t)b * 80)));
        const __m512 f01 = _mm512_cvtph_ps(h01), f23 = _mm512_cvtph_ps(h23);
        _mm512_storeu_ps(dst + G_QUANTS, _mm512_permutex2var_ps(f01, even, f23));
        _mm512_storeu_ps(dst + G_QUANTS + 64, _mm512_permutex2var_ps(f01, odd, f23));
    }
}

G_TARGET void sn_q4_1_repack_group(const uint8_t *w, size_t row_bytes, int rows, int packed, int first, int count,
                                   int blocks, uint8_t *out) {
    if (packed && count == 16 && first % 4 == 0 && first + 16 <= rows / 4 * 4) g_repack_packed(w, row_bytes, first, blocks, out);
    else g_repack_rows(w, row_bytes, rows, packed, first, count, blocks, out);
}

G_TARGET void sn_q4_1_activation_scales(const uint8_t *a, int blocks, float *ds) {
    for (int b = 0; b < blocks; b++) {
        ds[2 * b] = sn_half(a + (size_t)b * G_A_BYTES);
        ds[2 * b + 1] = sn_half(a + (size_t)b * G_A_BYTES + 2);
    }
}

/// Sixteen rows by T activations, every block of the group.
G_INLINE void g_tile(int T, const uint8_t *group, int blocks, const uint8_t *a, size_t a_stride, const float *ds,
                     size_t ds_stride, __m512 *acc) {
    for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    for (int b = 0; b < blocks; b++) {
        const uint8_t *g = group + (size_t)b * G_BLOCK;
        const uint8_t *ab = a + (size_t)b * G_A_BYTES + 4;
        __m512i dot[8];
        for (int t = 0; t < T; t++) dot[t] = _mm512_setzero_si512();
        for (int k = 0; k < 8; k++) {
            const __m512i q = _mm512_loadu_si512(g + 64 * k);
            for (int t = 0; t < T; t++) {
                int32_t x;
                memcpy(&x, ab + (size_t)t * a_stride + 4 * k, 4);
                dot[t] = _mm512_dpbusd_epi32(dot[t], q, _mm512_set1_epi32(x));
            }
        }
        const __m512 dw = _mm512_loadu_ps(g + G_QUANTS), mw = _mm512_loadu_ps(g + G_QUANTS + 64);
        for (int t = 0; t < T; t++) {
            const float *s = ds + (size_t)t * ds_stride + 2 * b;
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[t]), _mm512_mul_ps(dw, _mm512_set1_ps(s[0])), acc[t]);
            acc[t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(s[1]), acc[t]);
        }
    }
}

/// One packed four-row group's integer dots of a block with activation quants `qy`, row order: bytes
/// 0-31 of the group's quants (`v0`) hold rows 0 and 1 (low and high nibbles), bytes 32-63 (`v1`)
/// rows 2 and 3. Each row's eight int32 lanes by `vpdpbusd` (each at most 4 * 15 * 128 = 7680 in
/// magnitude, activation quants being -127..127), then summed across lanes by packing to int16 and
/// `vpmaddwd` with ones, twice (sums of two lanes at most 15360, of four 30720: no saturation), and
/// adding the halves: integer sums, exact in any order, in fewer operations than `vphaddd`.
G_INLINE __m128i g_direct_dots(__m256i v0, __m256i v1, __m256i low, __m256i qy) {
    const __m256i z = _mm256_setzero_si256(), ones = _mm256_set1_epi16(1);
    const __m256i p0 = _mm256_dpbusd_epi32(z, _mm256_and_si256(v0, low), qy);
    const __m256i p1 = _mm256_dpbusd_epi32(z, _mm256_and_si256(_mm256_srli_epi16(v0, 4), low), qy);
    const __m256i p2 = _mm256_dpbusd_epi32(z, _mm256_and_si256(v1, low), qy);
    const __m256i p3 = _mm256_dpbusd_epi32(z, _mm256_and_si256(_mm256_srli_epi16(v1, 4), low), qy);
    // Per 128-bit half: [rows 0 and 1: lanes 0+1, 2+3 each | ...], then [row 0..3: four lanes each].
    const __m256i m01 = _mm256_madd_epi16(_mm256_packs_epi32(p0, p1), ones), m23 = _mm256_madd_epi16(_mm256_packs_epi32(p2, p3), ones);
    const __m256i t = _mm256_madd_epi16(_mm256_packs_epi32(m01, m23), ones);
    return _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
}

/// One row against T activations from its own bytes, scalar integer dots: the rows outside full
/// packed eight-row sets.
G_INLINE void g_direct_row(sn_row row, int blocks, const uint8_t *a, size_t a_stride, const float *ds, size_t ds_stride,
                           int tokens, float *out, size_t out_stride) {
    for (int t = 0; t < tokens; t++) {
        float acc = 0;
        for (int b = 0; b < blocks; b++) {
            const uint8_t *q = row.q + (size_t)b * row.stride;
            const int8_t *y = (const int8_t *)(a + (size_t)t * a_stride + (size_t)b * G_A_BYTES + 4);
            int dot = 0;
            for (int i = 0; i < 32; i++) {
                const int v = row.shift < 0 ? (i < 16 ? q[i] & 0xF : q[i - 16] >> 4) : (q[i] >> row.shift) & 0xF;
                dot += v * y[i];
            }
            const float dw = sn_half(row.d + (size_t)b * row.stride), mw = sn_half(row.d + (size_t)b * row.stride + 2);
            const float *s = ds + (size_t)t * ds_stride + 2 * b;
            const float scale = dw * s[0];
            acc = __builtin_fmaf((float)dot, scale, acc);
            acc = __builtin_fmaf(mw, s[1], acc);
        }
        out[(size_t)t * out_stride] = acc;
    }
}

/// One packed four-row group `g` against T activations (T a constant 1..4 where inlined), every block,
/// block after block: the matrix read as one sequential stream, as the exact decode kernel reads it,
/// with its software prefetch 2 KB ahead (one thread, from memory: 1.11x the exact decode kernel
/// without the prefetch; eight rows in two streams with prefetches read 0.72x; in the engine, whose
/// members take chunks of 64-256 rows, the prefetch gives 1.10x the one-token decoding against
/// 0.94x without it at the exact kernels' 16-256).
G_INLINE void g_direct_group(int T, const uint8_t *g, int blocks, const uint8_t *a, size_t a_stride, const float *ds,
                             size_t ds_stride, float *out, size_t out_stride) {
    const __m256i low = _mm256_set1_epi8(0x0F);
    __m128 acc[4];
    for (int t = 0; t < T; t++) acc[t] = _mm_setzero_ps();
    for (int b = 0; b < blocks; b++) {
        const uint8_t *x = g + (size_t)b * 80;
        _mm_prefetch((const char *)x + 2048, _MM_HINT_T0);
        const __m256i v0 = _mm256_loadu_si256((const __m256i *)(x + 16)), v1 = _mm256_loadu_si256((const __m256i *)(x + 48));
        // d, m of the four rows (interleaved as F16: d0 m0 d1 m1 ...).
        const __m256 f = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)x));
        const __m128 f0 = _mm256_castps256_ps128(f), f1 = _mm256_extractf128_ps(f, 1);
        const __m128 d = _mm_shuffle_ps(f0, f1, _MM_SHUFFLE(2, 0, 2, 0)), m = _mm_shuffle_ps(f0, f1, _MM_SHUFFLE(3, 1, 3, 1));
        for (int t = 0; t < T; t++) {
            const uint8_t *ab = a + (size_t)t * a_stride + (size_t)b * G_A_BYTES + 4;
            const __m128i dots = g_direct_dots(v0, v1, low, _mm256_loadu_si256((const __m256i *)ab));
            const float *s = ds + (size_t)t * ds_stride + 2 * b;
            acc[t] = _mm_fmadd_ps(_mm_cvtepi32_ps(dots), _mm_mul_ps(d, _mm_set1_ps(s[0])), acc[t]);
            acc[t] = _mm_fmadd_ps(m, _mm_set1_ps(s[1]), acc[t]);
        }
    }
    for (int t = 0; t < T; t++) _mm_storeu_ps(out + (size_t)t * out_stride, acc[t]);
}

G_TARGET void sn_q4_1_rows_direct(const uint8_t *w, size_t row_bytes, int rows, int packed, int first, int count, int blocks,
                                  const uint8_t *a, size_t a_stride, const float *ds, size_t ds_stride, int tokens,
                                  float *out, size_t out_stride) {
    const int grouped = packed ? rows / 4 * 4 : 0;
    for (int r = first; r < first + count;) {
        if (r % 4 != 0 || r + 4 > first + count || r + 4 > grouped) {
            g_direct_row(g_row(w, row_bytes, rows, packed, r), blocks, a, a_stride, ds, ds_stride, tokens, out + (r - first), out_stride);
            r++;
            continue;
        }
        const uint8_t *g = w + (size_t)r * row_bytes;
        for (int t0 = 0; t0 < tokens; t0 += 4) {
            const int T = tokens - t0 < 4 ? tokens - t0 : 4;
            const uint8_t *at = a + (size_t)t0 * a_stride;
            const float *st = ds + (size_t)t0 * ds_stride;
            float *ot = out + (size_t)t0 * out_stride + (r - first);
            switch (T) {
            case 4: g_direct_group(4, g, blocks, at, a_stride, st, ds_stride, ot, out_stride); break;
            case 3: g_direct_group(3, g, blocks, at, a_stride, st, ds_stride, ot, out_stride); break;
            case 2: g_direct_group(2, g, blocks, at, a_stride, st, ds_stride, ot, out_stride); break;
            default: g_direct_group(1, g, blocks, at, a_stride, st, ds_stride, ot, out_stride); break;
            }
        }
        r += 4;
    }
}

G_TARGET void sn_q4_1_group_gemm(const uint8_t *group, int blocks, int rows, const uint8_t *a, size_t a_stride,
                                 const float *ds, size_t ds_stride, int tokens, float *out, size_t out_stride) {
    const __mmask16 mask = (__mmask16)((1u << rows) - 1);
    for (int t0 = 0; t0 < tokens; t0 += 8) {
        const int T = tokens - t0 < 8 ? tokens - t0 : 8;
        __m512 acc[8];
        const uint8_t *at = a + (size_t)t0 * a_stride;
        const float *st = ds + (size_t)t0 * ds_stride;
#define G_TILE(N) g_tile(N, group, blocks, at, a_stride, st, ds_stride, acc)
        SN_TILE_CASES(G_TILE)
        for (int t = 0; t < T; t++) _mm512_mask_storeu_ps(out + (size_t)(t0 + t) * out_stride, mask, acc[t]);
    }
}

#else

size_t sn_q4_1_group_bytes(int blocks) { (void)blocks; return 0; }
void sn_q4_1_repack_group(const uint8_t *w, size_t row_bytes, int rows, int packed, int first, int count, int blocks,
                          uint8_t *out) {
    (void)w; (void)row_bytes; (void)rows; (void)packed; (void)first; (void)count; (void)blocks; (void)out;
}
void sn_q4_1_activation_scales(const uint8_t *a, int blocks, float *ds) { (void)a; (void)blocks; (void)ds; }
void sn_q4_1_rows_direct(const uint8_t *w, size_t row_bytes, int rows, int packed, int first, int count, int blocks,
                         const uint8_t *a, size_t a_stride, const float *ds, size_t ds_stride, int tokens, float *out,
                         size_t out_stride) {
    (void)w; (void)row_bytes; (void)rows; (void)packed; (void)first; (void)count; (void)blocks; (void)a; (void)a_stride;
    (void)ds; (void)ds_stride; (void)tokens; (void)out; (void)out_stride;
}
void sn_q4_1_group_gemm(const uint8_t *group, int blocks, int rows, const uint8_t *a, size_t a_stride, const float *ds,
                        size_t ds_stride, int tokens, float *out, size_t out_stride) {
    (void)group; (void)blocks; (void)rows; (void)a; (void)a_stride; (void)ds; (void)ds_stride; (void)tokens; (void)out;
    (void)out_stride;
}

#endif
