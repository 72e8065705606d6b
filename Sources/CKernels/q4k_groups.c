// Q4_K prompt products in sixteen-row groups (AVX512-VNNI), for the tolerance prompt path
// (`PrefillMode.blas`): not llama.cpp's bit order, like the F32 BLAS products it stands in for.
//
// Why not the exact GEMM (kquants.c): reproducing ggml's eight integer lanes per (row, activation)
// costs a shift, a blend and a 16-bit multiply for every two `vpdpbusd`. Here one 512-bit register
// holds four consecutive weights of each of sixteen rows (a "group"), so one `vpdpbusd` against four
// broadcast activation bytes gives sixteen rows' partial dots with nothing to rearrange, and a
// 32-element sub-block's integer dot is scaled once, in float: per sub-block and activation eight
// `vpdpbusd`, one conversion and two FMAs (the scale, the minimum) for 512 products.
//
// A group is repacked from ggml rows per call into a buffer the caller owns (`sn_q4k_group_bytes`),
// so the model is never held twice; the repacking is paid back over the prompt's activations.
// See include/sn_kernels.h and Kernels' Q4KGroups.swift.
#include "sn_kernels.h"

#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>

#include "sn_internal.h"

#define QG_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define QG_INLINE static inline __attribute__((always_inline)) QG_TARGET

/// Per 256-element block of a group: quants [8 sub-blocks][8 steps][16 rows][4 bytes], then
/// `d * scale` [8][16] floats, then `dmin * min` [8][16] floats.
#define QG_QUANTS 4096
#define QG_BLOCK (QG_QUANTS + 2 * 8 * 16 * 4)
#define QG_A_BYTES 292

size_t sn_q4k_group_bytes(int blocks) { return (size_t)blocks * QG_BLOCK; }

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

QG_TARGET void sn_q4k_repack_group(const uint8_t *w, size_t row_bytes, int rows, int blocks, uint8_t *out) {
    const __m256i m4 = _mm256_set1_epi8(0xF);
    uint8_t unpacked[16][256];
    for (int b = 0; b < blocks; b++) {
        uint8_t *dst = out + (size_t)b * QG_BLOCK;
        float *dsc = (float *)(dst + QG_QUANTS), *dmn = dsc + 8 * 16;
        for (int r = 0; r < 16; r++) {
            if (r >= rows) {
                memset(unpacked[r], 0, 256);
                for (int j = 0; j < 8; j++) dsc[16 * j + r] = dmn[16 * j + r] = 0;
                continue;
            }
            const uint8_t *x = w + (size_t)r * row_bytes + (size_t)b * 144;
            const float d = sn_half(x), dmin = sn_half(x + 2);
            for (int j = 0; j < 8; j++) {
                uint8_t sc, m;
                qg_scale_min(j, x + 4, &sc, &m);
                dsc[16 * j + r] = d * (float)sc;
                dmn[16 * j + r] = dmin * (float)m;
            }
            for (int c = 0; c < 4; c++) {
                const __m256i bits = _mm256_loadu_si256((const __m256i *)(x + 16 + 32 * c));
                _mm256_storeu_si256((__m256i *)(unpacked[r] + 64 * c), _mm256_and_si256(bits, m4));
                _mm256_storeu_si256((__m256i *)(unpacked[r] + 64 * c + 32), _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4));
            }
        }
        // Step k of every row: four bytes at 4k, sixteen rows 256 bytes apart.
        const __m512i index = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                                 _mm512_set1_epi32(256));
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

/// Sixteen rows by T activations (the group's every block).
QG_INLINE void qg_tile(int T, const uint8_t *group, int blocks, const uint8_t *a, size_t a_stride,
                       const float *sums, size_t sums_stride, __m512 *acc) {
    for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    for (int b = 0; b < blocks; b++) {
        const uint8_t *g = group + (size_t)b * QG_BLOCK;
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

QG_TARGET void sn_q4k_group_gemm(const uint8_t *group, int blocks, int rows, const uint8_t *a, size_t a_stride,
                                 const float *sums, size_t sums_stride, int tokens, float *out, size_t out_stride) {
    const __mmask16 mask = (__mmask16)((1u << rows) - 1);
    for (int t0 = 0; t0 < tokens; t0 += 8) {
        const int T = tokens - t0 < 8 ? tokens - t0 : 8;
        __m512 acc[8];
        const uint8_t *at = a + (size_t)t0 * a_stride;
        const float *st = sums + (size_t)t0 * sums_stride;
        switch (T) {
        case 8: qg_tile(8, group, blocks, at, a_stride, st, sums_stride, acc); break;
        case 7: qg_tile(7, group, blocks, at, a_stride, st, sums_stride, acc); break;
        case 6: qg_tile(6, group, blocks, at, a_stride, st, sums_stride, acc); break;
        case 5: qg_tile(5, group, blocks, at, a_stride, st, sums_stride, acc); break;
        case 4: qg_tile(4, group, blocks, at, a_stride, st, sums_stride, acc); break;
        case 3: qg_tile(3, group, blocks, at, a_stride, st, sums_stride, acc); break;
        case 2: qg_tile(2, group, blocks, at, a_stride, st, sums_stride, acc); break;
        default: qg_tile(1, group, blocks, at, a_stride, st, sums_stride, acc); break;
        }
        for (int t = 0; t < T; t++) _mm512_mask_storeu_ps(out + (size_t)(t0 + t) * out_stride, mask, acc[t]);
    }
}

#else

size_t sn_q4k_group_bytes(int blocks) { return (size_t)blocks * 5120; }
void sn_q4k_repack_group(const uint8_t *w, size_t row_bytes, int rows, int blocks, uint8_t *out) {
    (void)w; (void)row_bytes; (void)rows; (void)blocks; (void)out;
}
void sn_q4k_activation_sums(const uint8_t *a, int blocks, float *sums) { (void)a; (void)blocks; (void)sums; }
void sn_q4k_group_gemm(const uint8_t *group, int blocks, int rows, const uint8_t *a, size_t a_stride,
                       const float *sums, size_t sums_stride, int tokens, float *out, size_t out_stride) {
    (void)group; (void)blocks; (void)rows; (void)a; (void)a_stride; (void)sums; (void)sums_stride; (void)tokens;
    (void)out; (void)out_stride;
}

#endif
