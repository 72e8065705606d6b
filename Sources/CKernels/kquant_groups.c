// K-quant prompt products in sixteen-row groups (AVX512-VNNI), for the tolerance prompt path
// (`PrefillMode.blas`): Q4_K and Q6_K, not llama.cpp's bit order, like the F32 BLAS products they
// stand in for.
//
// Why not the exact GEMM (kquants.c): reproducing ggml's eight integer lanes per (row, activation)
// costs a shift, a blend and a 16-bit multiply for every two `vpdpbusd`. Here one 512-bit register
// holds four consecutive weights of each of sixteen rows (a "group"), so one `vpdpbusd` against four
// broadcast activation bytes gives sixteen rows' partial dots with nothing to rearrange, and a
// sub-block's integer dot is scaled once, in float:
// - Q4_K (32-element sub-blocks, weights 0..15 against signed activations): per sub-block and
//   activation eight `vpdpbusd`, one conversion and two FMAs (the scale, the minimum) for 512 products;
// - Q6_K (16-element sub-blocks, weights -32..31): the weights signed and the activations made
//   unsigned (+128, `sn_q6k_activations`), whose extra 128 x (sum of the sub-block's weights) is a
//   per-row constant folded in once per block: four `vpdpbusd`, one conversion, one FMA.
//
// A group is repacked from ggml rows per call into a buffer the caller owns (`sn_kquant_group_bytes`),
// so the model is never held twice; the repacking is paid back over the prompt's activations.
// See include/sn_kernels.h and Kernels' KQuantGroups.swift.
#include "sn_kernels.h"

#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>

#include "sn_internal.h"

#define QG_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define QG_INLINE static inline __attribute__((always_inline)) QG_TARGET

/// Per 256-element block of a group: quants [sub-blocks][steps][16 rows][4 bytes] (4096 bytes), then
/// Q4_K: `d * scale` [8][16] floats and `dmin * min` [8][16] floats;
/// Q6_K: `d * scale` [16][16] floats and each row's 128 x sum of `d * scale * weight` [16] floats.
#define QG_QUANTS 4096
#define QG_Q4K_BLOCK (QG_QUANTS + 2 * 8 * 16 * 4)
#define QG_Q6K_BLOCK (QG_QUANTS + 16 * 16 * 4 + 16 * 4)
#define QG_A_BYTES 292

size_t sn_kquant_group_bytes(int type, int blocks) {
    switch (type) {
    case SN_Q4_K: return (size_t)blocks * QG_Q4K_BLOCK;
    case SN_Q6_K: return (size_t)blocks * QG_Q6K_BLOCK;
    default: return 0;
    }
}

/// Q4_K's 6-bit scale and minimum of sub-block j (ggml's get_scale_min_k4).
static inline void qg_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/// Row r's 256 quants of one Q4_K block (0..15) and its sub-block factors.
QG_INLINE void qg_unpack_q4k(const uint8_t *x, int r, uint8_t *q, float *dsc, float *dmn) {
    const __m256i m4 = _mm256_set1_epi8(0xF);
    const float d = sn_half(x), dmin = sn_half(x + 2);
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        qg_scale_min(j, x + 4, &sc, &m);
        dsc[16 * j + r] = d * (float)sc;
        dmn[16 * j + r] = dmin * (float)m;
    }
    for (int c = 0; c < 4; c++) {
        const __m256i bits = _mm256_loadu_si256((const __m256i *)(x + 16 + 32 * c));
        _mm256_storeu_si256((__m256i *)(q + 64 * c), _mm256_and_si256(bits, m4));
        _mm256_storeu_si256((__m256i *)(q + 64 * c + 32), _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4));
    }
}

/// Row r's 256 quants of one Q6_K block (-32..31, ggml's dequantize_row_q6_K order), its sixteen
/// sub-block factors, and 128 x the sum of its dequantized weights.
QG_INLINE void qg_unpack_q6k(const uint8_t *x, int r, int8_t *q, float *dsc, float *k) {
    const uint8_t *ql = x, *qh = x + 128;
    const int8_t *sc = (const int8_t *)(x + 192);
    const float d = sn_half(x + 208);
    for (int n = 0; n < 2; n++) {
        for (int l = 0; l < 32; l++) {
            int8_t *y = q + 128 * n;
            y[l] = (int8_t)(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
            y[l + 32] = (int8_t)(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
            y[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            y[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        }
        ql += 64;
        qh += 32;
    }
    float sum = 0;
    for (int s = 0; s < 16; s++) {
        int column = 0;
        for (int i = 0; i < 16; i++) column += q[16 * s + i];
        dsc[16 * s + r] = d * (float)sc[s];
        sum += dsc[16 * s + r] * (float)column;
    }
    k[r] = 128 * sum;
}

QG_TARGET void sn_kquant_repack_group(int type, const uint8_t *w, size_t row_bytes, int rows, int blocks, uint8_t *out) {
    const int q6 = type == SN_Q6_K;
    const size_t bb = q6 ? 210 : 144, ob = q6 ? QG_Q6K_BLOCK : QG_Q4K_BLOCK;
    const int factors = q6 ? 16 * 16 + 16 : 2 * 8 * 16;
    uint8_t unpacked[16][256];
    // Step k of every row: four bytes at 4k, sixteen rows 256 bytes apart.
    const __m512i index = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                             _mm512_set1_epi32(256));
    for (int b = 0; b < blocks; b++) {
        uint8_t *dst = out + (size_t)b * ob;
        float *f = (float *)(dst + QG_QUANTS);
        memset(f, 0, sizeof(float) * (size_t)factors);
        for (int r = 0; r < 16; r++) {
            if (r >= rows) {
                memset(unpacked[r], 0, 256);
                continue;
            }
            const uint8_t *x = w + (size_t)r * row_bytes + (size_t)b * bb;
            if (q6) qg_unpack_q6k(x, r, (int8_t *)unpacked[r], f, f + 16 * 16);
            else qg_unpack_q4k(x, r, unpacked[r], f, f + 8 * 16);
        }
        for (int k = 0; k < 64; k++)
            _mm512_storeu_si512(dst + 64 * k, _mm512_i32gather_epi32(index, (const void *)(&unpacked[0][4 * k]), 1));
    }
}

void sn_q4k_activation_sums(const uint8_t *a, int blocks, float *sums) {
    for (int b = 0; b < blocks; b++) {
        int16_t s[16];
        memcpy(s, a + (size_t)b * QG_A_BYTES + 260, sizeof s);
        for (int j = 0; j < 8; j++) sums[8 * b + j] = (float)(s[2 * j] + s[2 * j + 1]);
    }
}

void sn_q6k_activations(const uint8_t *a, int blocks, uint8_t *out) {
    for (int b = 0; b < blocks; b++) {
        const uint8_t *x = a + (size_t)b * QG_A_BYTES;
        uint8_t *y = out + (size_t)b * QG_A_BYTES;
        memcpy(y, x, QG_A_BYTES);
        for (int i = 0; i < 256; i++) y[4 + i] = x[4 + i] ^ 0x80;
    }
}

/// Q4_K: sixteen rows by T activations (the group's every block).
QG_INLINE void qg_tile_q4k(int T, const uint8_t *group, int blocks, const uint8_t *a, size_t a_stride,
                           const float *sums, size_t sums_stride, __m512 *acc) {
    for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    for (int b = 0; b < blocks; b++) {
        const uint8_t *g = group + (size_t)b * QG_Q4K_BLOCK;
        const float *dsc = (const float *)(g + QG_QUANTS), *dmn = dsc + 8 * 16;
        const uint8_t *ab = a + (size_t)b * QG_A_BYTES;
        __m512 sum[8];
        for (int t = 0; t < T; t++) sum[t] = _mm512_setzero_ps();
        for (int j = 0; j < 8; j++) {
            __m512i dot[8];
            for (int t = 0; t < T; t++) dot[t] = _mm512_setzero_si512();
            for (int k = 0; k < 8; k++) {
                const __m512i q = _mm512_loadu_si512(g + 64 * (8 * j + k));
                for (int t = 0; t < T; t++) {
                    int32_t x;
                    memcpy(&x, ab + (size_t)t * a_stride + 4 + 32 * j + 4 * k, 4);
                    dot[t] = _mm512_dpbusd_epi32(dot[t], q, _mm512_set1_epi32(x));
                }
            }
            const __m512 sc = _mm512_loadu_ps(dsc + 16 * j), mn = _mm512_loadu_ps(dmn + 16 * j);
            for (int t = 0; t < T; t++) {
                sum[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[t]), sc, sum[t]);
                sum[t] = _mm512_fnmadd_ps(mn, _mm512_set1_ps(sums[(size_t)t * sums_stride + 8 * b + j]), sum[t]);
            }
        }
        for (int t = 0; t < T; t++) {
            float da;
            memcpy(&da, ab + (size_t)t * a_stride, 4);
            acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(da), sum[t], acc[t]);
        }
    }
}

/// Q6_K: sixteen rows by T unsigned activations (`sn_q6k_activations`).
QG_INLINE void qg_tile_q6k(int T, const uint8_t *group, int blocks, const uint8_t *a, size_t a_stride, __m512 *acc) {
    for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    for (int b = 0; b < blocks; b++) {
        const uint8_t *g = group + (size_t)b * QG_Q6K_BLOCK;
        const float *dsc = (const float *)(g + QG_QUANTS);
        const __m512 k = _mm512_loadu_ps(dsc + 16 * 16);
        const uint8_t *ab = a + (size_t)b * QG_A_BYTES;
        __m512 sum[8];
        for (int t = 0; t < T; t++) sum[t] = _mm512_setzero_ps();
        for (int j = 0; j < 16; j++) {
            __m512i dot[8];
            for (int t = 0; t < T; t++) dot[t] = _mm512_setzero_si512();
            for (int s = 0; s < 4; s++) {
                const __m512i q = _mm512_loadu_si512(g + 64 * (4 * j + s));
                for (int t = 0; t < T; t++) {
                    int32_t x;
                    memcpy(&x, ab + (size_t)t * a_stride + 4 + 16 * j + 4 * s, 4);
                    dot[t] = _mm512_dpbusd_epi32(dot[t], _mm512_set1_epi32(x), q);
                }
            }
            const __m512 sc = _mm512_loadu_ps(dsc + 16 * j);
            for (int t = 0; t < T; t++) sum[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[t]), sc, sum[t]);
        }
        for (int t = 0; t < T; t++) {
            float da;
            memcpy(&da, ab + (size_t)t * a_stride, 4);
            acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(da), _mm512_sub_ps(sum[t], k), acc[t]);
        }
    }
}

QG_TARGET void sn_kquant_group_gemm(int type, const uint8_t *group, int blocks, int rows, const uint8_t *a, size_t a_stride,
                                    const float *sums, size_t sums_stride, int tokens, float *out, size_t out_stride) {
    const __mmask16 mask = (__mmask16)((1u << rows) - 1);
    for (int t0 = 0; t0 < tokens; t0 += 8) {
        const int T = tokens - t0 < 8 ? tokens - t0 : 8;
        __m512 acc[8];
        const uint8_t *at = a + (size_t)t0 * a_stride;
        if (type == SN_Q6_K) {
#define QG_Q6K(N) qg_tile_q6k(N, group, blocks, at, a_stride, acc)
            SN_TILE_CASES(QG_Q6K)
        } else {
            const float *st = sums + (size_t)t0 * sums_stride;
#define QG_Q4K(N) qg_tile_q4k(N, group, blocks, at, a_stride, st, sums_stride, acc)
            SN_TILE_CASES(QG_Q4K)
        }
        for (int t = 0; t < T; t++) _mm512_mask_storeu_ps(out + (size_t)(t0 + t) * out_stride, mask, acc[t]);
    }
}

#else

size_t sn_kquant_group_bytes(int type, int blocks) { (void)type; (void)blocks; return 0; }
void sn_kquant_repack_group(int type, const uint8_t *w, size_t row_bytes, int rows, int blocks, uint8_t *out) {
    (void)type; (void)w; (void)row_bytes; (void)rows; (void)blocks; (void)out;
}
void sn_q4k_activation_sums(const uint8_t *a, int blocks, float *sums) { (void)a; (void)blocks; (void)sums; }
void sn_q6k_activations(const uint8_t *a, int blocks, uint8_t *out) { (void)a; (void)blocks; (void)out; }
void sn_kquant_group_gemm(int type, const uint8_t *group, int blocks, int rows, const uint8_t *a, size_t a_stride,
                          const float *sums, size_t sums_stride, int tokens, float *out, size_t out_stride) {
    (void)type; (void)group; (void)blocks; (void)rows; (void)a; (void)a_stride; (void)sums; (void)sums_stride;
    (void)tokens; (void)out; (void)out_stride;
}

#endif
